"""Admin pages under load: 50 signed-in users without think time against gunicorn (2 sync
workers, deploy/gunicorn.conf.py) on PostgreSQL.

Each user signs in through the real login form (password and a code computed from their own
TOTP authenticator: two-factor sign-in stays required), then requests, round and round, the
home page (the operations overview), the incident list, an incident's page, the maintenance
window list and the audit list; every tenth request posts a note to an open incident's
timeline instead (with the page's CSRF token, as a browser does).

The database is a throwaway portal database: the runbook's defaults, 100,000 incidents with
1,000,000 timeline events (bench/incidents_admin.py's generator), the generated maintenance
windows, 3 PostgreSQL databases and 5 HTTP endpoints collected for real and given an hour of
samples (the overview's sparklines), 2,000 audit records, and the users (spread over the
responder role groups).

Printed: requests/s, errors, p50/p95 per page and the gunicorn workers' CPU time per request
(user + system, read from /proc: less noisy than wall time on a shared machine), beside a
baseline measured in the same run: the same 50 users requesting /health (the portal's
cheapest page: the server's and the client's own ceiling).

Target (issue 15): 0 errors and at least 70 requests/s.
Runs with the test env (`make bench`): python bench/admin_load.py [--users 50] [--seconds 30]
`--before DIR` also serves another checkout of the portal (e.g. `git worktree add DIR main`)
from the same database and measures its admin pages in the same run: a before/after
comparison on a machine whose speed changes from one run to the next.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from bench.health import bench_database, free_port, gunicorn, wait_until  # noqa: E402
from bench.incidents_admin import generate  # noqa: E402

TARGET_RPS = 70.0
NOTE_EVERY = 10
PASSWORD = "load-bench-pw-7431!"
RESPONDER_GROUPS = ("On-call engineers", "Database admins", "DevOps", "Security team")
AUDIT_RECORDS = 2_000
SAMPLE_HOURS = 1
PAGES = {
    "home": "/admin/",
    "incident list": "/admin/incidents/incident/",
    "incident page": "/admin/incidents/incident/{incident}/change/",
    "window list": "/admin/maintenance/maintenancewindow/",
    "audit list": "/admin/audit/auditrecord/",
}
CSRF_INPUT = re.compile(rb'name="csrfmiddlewaretoken" value="([^"]+)"')


def seed(users: int) -> dict:
    """The throwaway database's contents; returns the users' names and the open incidents."""
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.core.management import call_command
    from django.db import connection

    from incidents.models import Incident, Status
    from maintenance.services import plans_generate
    from opsportal.audit.models import AuditAction, AuditSource
    from opsportal.audit.services import audit_record
    from opsportal.monitoring.models import LatestValue
    from opsportal.monitoring.services import collection_run_due
    from opsportal.systems.models import HttpEndpoint, PostgresDatabase
    from tests import realsystems
    from tests.signin import enrol_authenticator

    call_command("migrate", verbosity=0)
    call_command("load_defaults", verbosity=0)
    started = time.perf_counter()
    with connection.cursor() as cursor:
        generate(cursor)
    print(f"  incidents generated in {time.perf_counter() - started:.0f} s", flush=True)
    plans_generate()

    database = connection.settings_dict
    for i in range(3):
        PostgresDatabase.objects.create(
            name=f"load-postgres-{i}",
            host=database["HOST"] or "127.0.0.1",
            port=int(database["PORT"] or 5432),
            dbname=database["NAME"],
            username=database["USER"] or "postgres",
        )
    with contextlib.ExitStack() as stack:
        for i in range(5):
            server = stack.enter_context(realsystems.http_server())
            HttpEndpoint.objects.create(name=f"load-api-{i}", url=server.url + "/health")
        collection_run_due()
    series = list(LatestValue.objects.values_list("system_id", "metric", "subject"))
    with connection.cursor() as cursor:
        for system_id, metric, subject in series:
            cursor.execute(
                "INSERT INTO monitoring_sample (at, system_id, metric, subject, value) "
                "SELECT now() - make_interval(secs => s * 30), %s, %s, %s, random() * 100 "
                "FROM generate_series(1, %s) AS s",
                [system_id, metric, subject, SAMPLE_HOURS * 120],
            )
        cursor.execute("ANALYZE")

    for n in range(AUDIT_RECORDS):
        audit_record(
            action=AuditAction.CHANGE,
            object_type="incidents.incident",
            object_id=str(n + 1),
            object_repr=f"Incident {n + 1}",
            message=f"Bench change {n}",
            source=AuditSource.ADMIN,
        )

    model = get_user_model()
    first = model.objects.create_user("load-0", "load-0@example.com", PASSWORD, is_staff=True)
    names = ["load-0"]
    for n in range(1, users):
        user = model(username=f"load-{n}", email=f"load-{n}@example.com", is_staff=True)
        user.password = first.password  # the same password: one slow hash, not fifty
        user.save()
        names.append(user.username)
    groups = {g.name: g for g in Group.objects.filter(name__in=RESPONDER_GROUPS)}
    for n, user in enumerate(model.objects.filter(username__in=names).order_by("pk")):
        user.groups.add(groups[RESPONDER_GROUPS[n % len(RESPONDER_GROUPS)]])
        enrol_authenticator(user)
    incidents = list(
        Incident.objects.filter(status=Status.OPEN)
        .order_by("-pk")
        .values_list("pk", flat=True)[:50]
    )
    return {"users": names, "incidents": incidents}


def sign_in(session, base: str, username: str) -> None:
    from django.contrib.auth import get_user_model

    from tests.signin import authenticator_code, authenticator_of

    page = session.get(f"{base}/admin/login/", timeout=60)
    token = CSRF_INPUT.search(page.content).group(1).decode()
    device = authenticator_of(get_user_model().objects.get(username=username))
    response = session.post(
        f"{base}/admin/login/?next=/admin/",
        data={
            "csrfmiddlewaretoken": token,
            "username": username,
            "password": PASSWORD,
            "otp_token": authenticator_code(device),
            "next": "/admin/",
        },
        headers={"Referer": f"{base}/admin/login/"},
        timeout=60,
    )
    if not response.url.endswith("/admin/") or response.status_code != 200:
        raise RuntimeError(f"{username} could not sign in: {response.status_code} {response.url}")


class Load:
    """Users requesting pages without think time until the deadline; figures per page."""

    def __init__(self, base: str, sessions: list, incidents: list[int]) -> None:
        self.base, self.sessions, self.incidents = base, sessions, incidents
        self.timings: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, int] = defaultdict(int)
        self.error_examples: list[str] = []
        self.lock = threading.Lock()

    def run(self, seconds: float, pages: list[str]) -> float:
        deadline = time.monotonic() + seconds
        threads = [
            threading.Thread(target=self.user, args=(n, session, pages, deadline))
            for n, session in enumerate(self.sessions)
        ]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return time.perf_counter() - started

    def user(self, n: int, session, pages: list[str], deadline: float) -> None:
        count = n  # users start at different places in the round
        while time.monotonic() < deadline:
            count += 1
            incident = self.incidents[count % len(self.incidents)]
            if pages != ["baseline"] and count % NOTE_EVERY == 0:
                self.note(session, incident)
                continue
            name = pages[count % len(pages)]
            path = "/health" if name == "baseline" else PAGES[name].format(incident=incident)
            self.request(name, lambda path=path: session.get(self.base + path, timeout=60))

    def note(self, session, incident: int) -> None:
        page = f"{self.base}/admin/incidents/incident/{incident}/change/"
        token = session.cookies.get("csrftoken", "")

        def post():
            return session.post(
                f"{self.base}/admin/incidents/incident/{incident}/note/",
                data={"csrfmiddlewaretoken": token, "text": "Load bench: still looking."},
                headers={"Referer": page},
                allow_redirects=False,
                timeout=60,
            )

        self.request("post a note", post, ok=(302,))

    def request(self, name: str, send, ok=(200,)) -> None:
        started = time.perf_counter()
        try:
            response = send()
            status = response.status_code
            failed = status not in ok or (
                status == 302 and "/login/" in response.headers["Location"]
            )
        except Exception as exc:  # a refused or timed-out connection is an error too
            status, failed = repr(exc)[:120], True
        elapsed = (time.perf_counter() - started) * 1000
        with self.lock:
            self.timings[name].append(elapsed)
            if failed:
                self.errors[name] += 1
                if len(self.error_examples) < 5:
                    self.error_examples.append(f"{name}: {status}")


def worker_cpu_seconds(master_pid: int) -> float:
    """User + system CPU of gunicorn's workers (the master's children) so far."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split():
        with contextlib.suppress(FileNotFoundError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def phase(load: Load, pages: list[str], seconds: float, master_pid: int) -> dict:
    load.timings.clear()
    load.errors.clear()
    cpu_before = worker_cpu_seconds(master_pid)
    elapsed = load.run(seconds, pages)
    cpu = worker_cpu_seconds(master_pid) - cpu_before
    done = sum(len(t) for t in load.timings.values())
    return {
        "rps": done / elapsed,
        "requests": done,
        "errors": sum(load.errors.values()),
        "cpu_ms": cpu * 1000 / max(done, 1),
        "pages": {
            name: (len(t), statistics.median(t), percentile(t, 95), load.errors.get(name, 0))
            for name, t in sorted(load.timings.items())
        },
    }


def percentile(values: list[float], pct: int) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


def report(args, base_figures: dict, figures: dict, before: dict | None) -> None:
    print(
        f"\nAdmin pages under load: {args.users} signed-in users without think time, gunicorn "
        f"with 2 sync workers on PostgreSQL, {args.seconds:g} s per phase, {os.cpu_count()} CPUs"
    )
    print(f"{'phase':32} {'requests':>9} {'req/s':>7} {'errors':>7} {'worker CPU ms/req':>18}")
    phases = [("baseline: /health", base_figures), ("admin pages", figures)]
    if before:
        phases.append((f"admin pages, {Path(args.before).name} (before)", before))
    for name, f in phases:
        print(
            f"{name:32} {f['requests']:>9} {f['rps']:>7.1f} {f['errors']:>7} {f['cpu_ms']:>18.1f}"
        )
    print(f"\n{'page':32} {'requests':>9} {'p50 ms':>8} {'p95 ms':>8} {'errors':>7}")
    for name, (n, p50, p95, errors) in figures["pages"].items():
        print(f"{name:32} {n:>9} {p50:>8.0f} {p95:>8.0f} {errors:>7}")
    if before:
        print("before:")
        for name, (n, p50, p95, errors) in before["pages"].items():
            print(f"{name:32} {n:>9} {p50:>8.0f} {p95:>8.0f} {errors:>7}")
    met = figures["errors"] == 0 and figures["rps"] >= TARGET_RPS
    print(
        f"\ntarget: 0 errors and >= {TARGET_RPS:g} req/s: {'met' if met else 'NOT met'} "
        f"({figures['errors']} errors, {figures['rps']:.1f} req/s; the baseline's "
        f"{base_figures['rps']:.0f} req/s is this machine's ceiling for the same clients)"
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--before", help="another checkout of the portal, measured too")
    args = parser.parse_args()
    admin_dsn = os.environ.get("OPSPORTAL_TEST_PG_DSN")
    if not admin_dsn:
        print("Run with the test environment: `make bench` (sources deploy/dev/test.env).")
        return 2
    import requests

    workdir = Path(tempfile.mkdtemp(prefix="opsportal-bench-admin-load-"))
    with bench_database(admin_dsn) as dbname:
        env = {
            **os.environ,
            "DATABASE_URL": admin_dsn.rsplit("/", 1)[0] + "/" + dbname,
            "OPSPORTAL_VAR_DIR": str(workdir / "var"),
        }
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        os.environ.update({k: env[k] for k in ("DATABASE_URL", "OPSPORTAL_VAR_DIR")})
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "opsportal.settings")
        print(f"Seeding {dbname} …", flush=True)
        world = seed(args.users)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        with gunicorn("opsportal.wsgi", env=env, port=port, log=workdir / "web.log") as master:
            wait_until(
                lambda: requests.get(base + "/health", timeout=5).status_code == 200,
                timeout=60,
                what="portal",
            )
            sessions = []
            for name in world["users"]:
                session = requests.Session()
                sign_in(session, base, name)
                sessions.append(session)
            from django.db import connections

            connections.close_all()
            print(f"  {len(sessions)} users signed in; measuring …", flush=True)
            load = Load(base, sessions, world["incidents"])
            pages = list(PAGES)
            phase(load, pages, args.warmup, master.pid)
            base_figures = phase(load, ["baseline"], args.seconds, master.pid)
            figures = phase(load, pages, args.seconds, master.pid)
        before = None
        if args.before:
            port = free_port()
            log = workdir / "before.log"
            with gunicorn(
                "opsportal.wsgi", env=env, port=port, log=log, chdir=Path(args.before)
            ) as master:
                base = f"http://127.0.0.1:{port}"
                wait_until(
                    lambda: requests.get(base + "/health", timeout=5).status_code == 200,
                    timeout=60,
                    what="the other checkout",
                )
                load.base = base  # the same users: the sessions are in the database
                phase(load, pages, args.warmup, master.pid)
                before = phase(load, pages, args.seconds, master.pid)
        if load.error_examples:
            print("errors, for example:", *load.error_examples, sep="\n  ")
    report(args, base_figures, figures, before)
    return 0


if __name__ == "__main__":
    sys.exit(main())
