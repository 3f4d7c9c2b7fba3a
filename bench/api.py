"""The REST API under gunicorn with 100,000 incidents and 1,000,000 timeline events: p50/p95
of the incident list (20, 50 and 200 per page), one incident with 200 timeline events, and
GET /api/v1/maintenance/now/ (a deploy pipeline's question), with the SQL queries of each
(counted in-process) so a count that grows with the page size shows.

A trivial WSGI app under the same gunicorn settings (deploy/gunicorn.conf.py, 2 sync
workers, a new connection per request) is measured in the same run as the baseline.

Targets (issue 12): p95 < 100 ms for lists, < 10 ms for maintenance/now; queries constant
across page sizes. Runs with the test env (`make bench`): python bench/api.py [--repeat 200]
It creates its own database and removes it (and its processes) at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from bench.health import BASELINE_APP, bench_database, free_port, get, gunicorn, wait_until  # noqa: E402
from bench.incidents_admin import EVENTS, INCIDENTS, generate  # noqa: E402

TARGET_LIST_P95_MS = 100.0
TARGET_NOW_P95_MS = 10.0
WARMUP = 20


def latencies(port: int, path: str, headers: dict, repeat: int) -> tuple[float, float, set]:
    for _ in range(WARMUP):
        get(port, path, headers)
    timings, statuses = [], set()
    for _ in range(repeat):
        started = time.perf_counter()
        status, _ = get(port, path, headers)
        timings.append((time.perf_counter() - started) * 1000)
        statuses.add(status)
    quantiles = statistics.quantiles(timings, n=100, method="inclusive")
    return statistics.median(timings), quantiles[94], statuses


def query_count(client, path: str, token: str) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.get(path, headers={"Authorization": f"Bearer {token}"})
    with CaptureQueriesContext(connection) as captured:
        response = client.get(path, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, (path, response.status_code, response.content[:300])
    return len(captured.captured_queries)


def prepare() -> tuple[str, int, str]:
    """Migrate, seed, generate the rows; returns (token, busy incident id, system name)."""
    import datetime as dt

    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from incidents.models import Incident
    from maintenance.models import MaintenanceWindow, WindowKind
    from maintenance.services import window_schedule, window_start
    from opsportal.api.services import api_token_create
    from opsportal.systems.models import HttpEndpoint

    call_command("migrate", verbosity=0)
    call_command("load_defaults", verbosity=0)
    started = time.perf_counter()
    with connection.cursor() as cursor:
        generate(cursor)
    print(
        f"generated {INCIDENTS:,} incidents, {EVENTS:,} events in {time.perf_counter() - started:.1f} s"
    )
    root = get_user_model().objects.create_superuser("bench", "b@example.com", "pw-bench-123!")
    busy = Incident.objects.create(title="busy incident", detected_at=timezone.now())
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO incidents_timelineevent (incident_id, at, kind, source, message, output)"
            " SELECT %s, now(), 'note', 'person', 'note ' || g, 'output ' || g"
            " FROM generate_series(1, 200) g",
            [busy.pk],
        )
    # Many systems and windows, one of them in progress for the system asked about.
    web = None
    for n in range(200):
        system = HttpEndpoint.objects.create(name=f"web-{n}", url="http://127.0.0.1:9/")
        web = web or system
    window = window_schedule(
        window=MaintenanceWindow(
            title="bench upgrade",
            kind=WindowKind.AD_HOC,
            starts_at=timezone.now(),
            ends_at=timezone.now() + dt.timedelta(hours=2),
        ),
        systems=[web],
        actor=root,
    )
    window_start(window=window, actor=root, override_reason="bench")
    token = api_token_create(user=root, name="bench", scope="read")[1]
    return token, busy.pk, web.name


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    admin_dsn = os.environ.get("OPSPORTAL_TEST_PG_DSN")
    if not admin_dsn:
        print("Run with the test environment: `make bench` (sources deploy/dev/test.env).")
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="opsportal-bench-api-"))
    with bench_database(admin_dsn) as dbname:
        env = {
            **os.environ,
            "DATABASE_URL": admin_dsn.rsplit("/", 1)[0] + "/" + dbname,
            "OPSPORTAL_VAR_DIR": str(workdir / "var"),
            # One token asks thousands of times a minute here: no throttle in the way.
            "API_TOKEN_RATE": "100000000/minute",
        }
        os.environ.update(
            {k: env[k] for k in ("DATABASE_URL", "OPSPORTAL_VAR_DIR", "API_TOKEN_RATE")}
        )
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "opsportal.settings")
        token, busy, system = prepare()
        from django.db import connections
        from django.test import Client

        headers = {"Authorization": f"Bearer {token}"}
        pages = [
            (
                f"incident list, {n} per page",
                f"/api/v1/incidents/?page_size={n}",
                TARGET_LIST_P95_MS,
            )
            for n in (20, 50, 200)
        ]
        pages += [
            (
                "incident list ?status=open&severity=sev1",
                "/api/v1/incidents/?status=open&severity=sev1",
                TARGET_LIST_P95_MS,
            ),
            ("incident with 200 timeline events", f"/api/v1/incidents/{busy}/", TARGET_LIST_P95_MS),
            ("maintenance/now", f"/api/v1/maintenance/now/?system={system}", TARGET_NOW_P95_MS),
        ]
        client = Client()
        queries = {path: query_count(client, path, token) for _, path, _ in pages}
        connections.close_all()

        (workdir / "baseline.py").write_text(BASELINE_APP)
        portal_port, baseline_port = free_port(), free_port()
        with (
            gunicorn("opsportal.wsgi", env=env, port=portal_port, log=workdir / "portal.log"),
            gunicorn(
                "baseline:application",
                env=env,
                port=baseline_port,
                log=workdir / "baseline.log",
                chdir=workdir,
            ),
        ):
            wait_until(lambda: get(portal_port, "/health")[0] == 200, timeout=60, what="portal")
            wait_until(lambda: get(baseline_port, "/")[0] == 200, timeout=30, what="baseline")
            base_p50, base_p95, _ = latencies(baseline_port, "/", {}, args.repeat)
            rows = []
            for name, path, target in pages:
                p50, p95, statuses = latencies(portal_port, path, headers, args.repeat)
                assert statuses == {200}, (path, statuses)
                rows.append((name, p50, p95, queries[path], target))

    print(
        f"\nREST API under gunicorn (2 sync workers), {INCIDENTS:,} incidents, {EVENTS:,} "
        f"timeline events; {args.repeat} sequential requests each, a new connection each\n"
    )
    print(f"{'request':44} {'p50 ms':>8} {'p95 ms':>8} {'queries':>8}  target")
    print(
        f"{'baseline (trivial WSGI app, same gunicorn)':44} {base_p50:>8.1f} {base_p95:>8.1f} {'-':>8}"
    )
    for name, p50, p95, count, target in rows:
        verdict = "ok" if p95 < target else "OVER"
        print(f"{name:44} {p50:>8.1f} {p95:>8.1f} {count:>8}  p95 < {target:g} ms: {verdict}")
    same = len({count for _, _, _, count, _ in rows[:3]}) == 1
    print(f"\nQueries constant across 20/50/200 per page: {'yes' if same else 'NO'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
