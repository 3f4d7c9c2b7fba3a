"""The incident changelist and an incident's page with 100,000 incidents and 1,000,000
timeline events in PostgreSQL: p50/p95 time and SQL queries per page.

Targets (issue 3): p95 under 200 ms (the runbook's API target) and a query count that does
not grow with the number of rows shown (pages of 20, 50 and 200 rows are compared; an
incident page with 10 and with 200 timeline events is compared).

The rows are generated with generate_series into a database of its own, dropped at the end.
Runs with the test env (`make bench`):  python bench/incidents_admin.py [--repeat 40]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
ADMIN_DSN = os.environ.get("OPSPORTAL_TEST_PG_DSN", "postgres://postgres@127.0.0.1:5432/postgres")
BENCH_DB = f"opsportal_bench_incidents_{os.getpid()}"
INCIDENTS, EVENTS = 100_000, 1_000_000
TARGET_P95_MS = 200


def admin(statement: str) -> None:
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(statement)


def generate(cursor) -> None:
    """Rows straight from generate_series (a few seconds instead of an hour of ORM saves);
    `%%` is a literal modulo next to psycopg's %s placeholders."""
    cursor.execute(
        """
        INSERT INTO incidents_incident (
            title, severity, category, status, source, team_id, alert_fingerprint, symptoms,
            impact, summary, resolution, review_what_happened, review_root_cause, detected_at,
            acknowledged_at, resolved_at, closed_at)
        SELECT 'Incident ' || g || ': ' || (ARRAY['API slow', 'DB connections', 'OOMKilled',
                 'Login spike', 'Disk full'])[1 + g %% 5],
               (ARRAY['sev1', 'sev2', 'sev3', 'sev4'])[1 + g %% 4],
               (ARRAY['api', 'database', 'container', 'security', 'other'])[1 + g %% 5],
               CASE WHEN g %% 50 = 0 THEN 'open' WHEN g %% 50 = 1 THEN 'investigating'
                    ELSE 'closed' END,
               'person', teams.ids[1 + g %% 4], '', 'symptoms of ' || g, '', '', '', '', '',
               now() - make_interval(mins => g),
               now() - make_interval(mins => g) + interval '4 minutes',
               CASE WHEN g %% 50 > 1 THEN now() - make_interval(mins => g) + interval '1 hour' END,
               CASE WHEN g %% 50 > 1 THEN now() - make_interval(mins => g) + interval '2 hours' END
        FROM generate_series(1, %s) g,
             (SELECT array_agg(id ORDER BY id) AS ids FROM people_team) teams
        """,
        [INCIDENTS],
    )
    cursor.execute(
        """
        INSERT INTO incidents_timelineevent (incident_id, at, kind, source, message, output)
        SELECT f.first_id + g %% %s, now() - make_interval(secs => g),
               (ARRAY['note', 'status', 'step', 'operation', 'notification'])[1 + g %% 5],
               (ARRAY['person', 'worker', 'alert', 'schedule'])[1 + g %% 4],
               'Event ' || g, CASE WHEN g %% 5 = 3 THEN repeat('log line ', 40) ELSE '' END
        FROM generate_series(0, %s - 1) g,
             (SELECT min(id) AS first_id FROM incidents_incident) f
        """,
        [INCIDENTS, EVENTS],
    )
    cursor.execute("ANALYZE")


def measure(client, url: str, repeat: int) -> tuple[float, float, int, int]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for _ in range(3):
        assert client.get(url).status_code == 200, url
    timings, queries, rows, sql_ms = [], 0, 0, []
    for _ in range(repeat):
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            response = client.get(url)
            timings.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
        queries = len(captured.captured_queries)
        sql_ms.append(sum(float(q["time"]) for q in captured.captured_queries) * 1000)
        context = response.context
        if context and "cl" in context:
            rows = len(context["cl"].result_list)
        elif context and "timeline" in context:
            rows = len(context["timeline"])
    timings.sort()
    p95 = statistics.quantiles(timings, n=20, method="inclusive")[18]
    if os.environ.get("BENCH_VERBOSE"):
        print(url, "median SQL ms", round(statistics.median(sql_ms), 1))
    return statistics.median(timings), p95, queries, rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=40)
    args = parser.parse_args()

    admin(f'CREATE DATABASE "{BENCH_DB}"')
    os.environ["DATABASE_URL"] = ADMIN_DSN.rsplit("/", 1)[0] + "/" + BENCH_DB
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "opsportal.settings")
    try:
        import django

        django.setup()
        from django.test.utils import setup_test_environment

        setup_test_environment()  # so responses carry their template context (rows shown)
        from django.contrib import admin as django_admin
        from django.contrib.auth import get_user_model
        from django.core.management import call_command
        from django.db import connection

        from incidents.models import Incident
        from opsportal.people.models import Responsibility, Team
        from opsportal.people.services import people_load_defaults

        # Two-factor sign-in is required in the test environment: sign in with a real device.
        from tests.signin import TwoFactorClient as Client

        call_command("migrate", verbosity=0)
        people_load_defaults()
        started = time.perf_counter()
        with connection.cursor() as cursor:
            generate(cursor)
        generated_in = time.perf_counter() - started
        user = get_user_model().objects.create_superuser("bench", "b@example.com", "pw-bench-123!")
        Team.objects.get(responsibility=Responsibility.DEVOPS).members.add(user)
        client = Client()
        client.force_login(user)
        model_admin = django_admin.site._registry[Incident]

        # Two incidents alike in everything but the length of their timelines.
        quiet, busy = (
            Incident.objects.create(title=title, detected_at=django_now())
            for title in ("quiet incident", "busy incident")
        )
        with connection.cursor() as cursor:
            for incident, events in ((quiet, 10), (busy, 200)):
                cursor.execute(
                    "INSERT INTO incidents_timelineevent"
                    " (incident_id, at, kind, source, message, output)"
                    " SELECT %s, now(), 'note', 'person', 'note ' || g, 'output ' || g"
                    " FROM generate_series(1, %s) g",
                    [incident.pk, events],
                )

        # As each gunicorn worker does when it loads opsportal.wsgi: what start-up (and here
        # the generation) left behind is moved out of the garbage collector's reach.
        from opsportal.wsgi import startup_objects_freeze

        startup_objects_freeze()
        rows = []
        base = "/admin/incidents/incident/"
        for per_page in (20, 50, 200):
            model_admin.list_per_page = per_page
            rows.append((f"changelist, {per_page} per page", *measure(client, base, args.repeat)))
        model_admin.list_per_page = 50
        rows.append(
            (
                "changelist ?status=open&severity=sev1",
                *measure(client, base + "?status__exact=open&severity__exact=sev1", args.repeat),
            )
        )
        rows.append(
            (
                "changelist ?category=database, page 100",
                *measure(client, base + "?category__exact=database&p=100", args.repeat),
            )
        )
        rows.append(
            (
                "changelist search q=Disk full (trigram index)",
                *measure(client, base + "?q=Disk+full", args.repeat),
            )
        )
        rows.append(
            (
                "incident page (10 events)",
                *measure(client, f"{base}{quiet.pk}/change/", args.repeat),
            )
        )
        rows.append(
            (
                "incident page (200 events)",
                *measure(client, f"{base}{busy.pk}/change/", args.repeat),
            )
        )

        print(
            f"\nIncidents admin: {INCIDENTS:,} incidents, {EVENTS:,} timeline events "
            f"(generated in {generated_in:.1f} s), {args.repeat} requests each\n"
        )
        print(
            f"{'page':44} {'rows':>5} {'p50 ms':>8} {'p95 ms':>8} {'queries':>8}  target p95 < {TARGET_P95_MS} ms"
        )
        for name, p50, p95, queries, shown in rows:
            verdict = "ok" if p95 < TARGET_P95_MS else "OVER"
            print(f"{name:44} {shown:>5} {p50:>8.1f} {p95:>8.1f} {queries:>8}  {verdict}")
        counts = {q for name, _, _, q, _ in rows[:3]}
        pages = {q for name, _, _, q, _ in rows[-2:]}
        print(
            f"\nQueries constant across 20/50/200 rows shown: {'yes' if len(counts) == 1 else 'NO'}; "
            f"across 10/200 timeline events: {'yes' if len(pages) == 1 else 'NO'}"
        )
    finally:
        from django.db import connections

        connections.close_all()
        admin(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')


def django_now():
    from django.utils import timezone

    return timezone.now()


if __name__ == "__main__":
    main()
