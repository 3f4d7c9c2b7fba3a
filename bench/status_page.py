"""Latency of the public status page under gunicorn, with 50 components and 90 days of
history, and the cost of refreshing it (what each collection round adds).

The portal is served as production serves it (deploy/gunicorn.conf.py, 2 sync workers) on
127.0.0.1 against its own PostgreSQL database holding 50 systems, each mapped to one
component, 7 days of raw `up`/`http_error` samples at 30 s and 83 days of 5-minute rollups
before them (about 2.2 M rows), three public incidents with updates and two public windows.
A trivial WSGI app under the same gunicorn settings is measured in the same run as the
baseline. The helpers (gunicorn, measure, database) are bench/health.py's.

Run with the test environment (`make bench` sources deploy/dev/test.env).
Target (issue 13): /status/ p95 < 20 ms.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("bench_health", BASE_DIR / "bench" / "health.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

COMPONENTS = 50
BROWSER = {"Accept-Encoding": "gzip, deflate, br"}
# (path, sequential requests, requests per client, p95 target ms or None)
PAGES = [
    ("/status/", 1000, 250, 20.0),
    ("/status/history/", 200, 50, None),
    ("/status/feed.atom", 200, 50, None),
]

SETUP = """
import datetime as dt, time
from django.db import connection
from django.utils import timezone
from django.contrib.auth import get_user_model
from opsportal.access import groups_load_defaults
from opsportal.statuspage.models import Component
from opsportal.statuspage import services
from opsportal.systems.models import HttpEndpoint, RedisCache
from incidents.services import incident_open
from incidents.services import incident_publish, incident_public_update_post
from maintenance.models import MaintenanceWindow
from maintenance.services import window_schedule

N = int(__import__("os").environ["BENCH_COMPONENTS"])
root = get_user_model().objects.create_superuser("bench", "bench@example.com", "bench-pass-123")
components = []
for i in range(N):
    if i % 2:
        system = HttpEndpoint.objects.create(name=f"api-{i}", url="http://127.0.0.1:9/", timeout_seconds=1)
    else:
        system = RedisCache.objects.create(name=f"cache-{i}", port=9, timeout_seconds=1)
    component = Component.objects.create(name=f"Component {i:02d}", position=i, description=f"Part {i} of the platform.")
    component.systems.set([system])
    components.append(component)
now = timezone.now()
with connection.cursor() as cur:
    # 7 days of raw samples at 30 s, then 83 days of 5-minute rollups, for every system.
    cur.execute('''
        INSERT INTO monitoring_sample (at, system_id, metric, subject, value)
        SELECT t, s.id, CASE WHEN s.kind = 'http' THEN 'http_error' ELSE 'up' END, '',
               CASE WHEN random() < 0.002 THEN CASE WHEN s.kind = 'http' THEN 1 ELSE 0 END
                    ELSE CASE WHEN s.kind = 'http' THEN 0 ELSE 1 END END
        FROM systems_system s,
             generate_series(%s::timestamptz - interval '7 days', %s::timestamptz, interval '30 seconds') t
    ''', [now, now])
    cur.execute('''
        INSERT INTO monitoring_samplerollup (bucket, system_id, metric, subject, mean, minimum, maximum, count)
        SELECT t, s.id, CASE WHEN s.kind = 'http' THEN 'http_error' ELSE 'up' END, '',
               CASE WHEN s.kind = 'http' THEN 0.001 ELSE 0.999 END, 0, 1, 10
        FROM systems_system s,
             generate_series(%s::timestamptz - interval '90 days', %s::timestamptz - interval '7 days', interval '5 minutes') t
    ''', [now, now])
    cur.execute("ANALYZE")
for n in range(3):
    incident = incident_open(title=f"internal {n}", severity="sev3", category="api", reporter=root)
    public = incident_publish(incident=incident, title=f"Public incident {n}", components=components[n::10], actor=root)
    for status in ("investigating", "identified"):
        incident_public_update_post(public_incident=public, status=status, message="An update for users.", actor=root)
for n in range(2):
    start = now + dt.timedelta(days=2 + n)
    window = window_schedule(window=MaintenanceWindow(title=f"w{n}", starts_at=start, ends_at=start + dt.timedelta(hours=2), public=True, public_title=f"Upgrade {n}"), actor=root)
    window.public_components.set(components[:5])
started = time.perf_counter()
services.status_refresh()
first = (time.perf_counter() - started) * 1000
times = []
for _ in range(10):
    started = time.perf_counter()
    services.status_refresh()
    times.append((time.perf_counter() - started) * 1000)
times.sort()
if __import__("os").environ.get("BENCH_PROFILE"):
    import cProfile, pstats
    cProfile.runctx("services.status_refresh()", globals(), locals(), "/tmp/status-refresh.prof")
    pstats.Stats("/tmp/status-refresh.prof").sort_stats("cumulative").print_stats(25)
from opsportal.statuspage.models import StatusSnapshot
print(f"REFRESH first={first:.0f} p50={times[4]:.0f} max={times[-1]:.0f} bytes={len(StatusSnapshot.objects.get().html)}")
"""


def main() -> int:
    admin_dsn = os.environ.get("OPSPORTAL_TEST_PG_DSN")
    if not admin_dsn:
        print("Run with the test environment: `make bench` (sources deploy/dev/test.env).")
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="opsportal-bench-status-"))
    try:
        with bench.bench_database(admin_dsn) as dbname:
            env = {
                **os.environ,
                "DATABASE_URL": admin_dsn.rsplit("/", 1)[0] + "/" + dbname,
                "OPSPORTAL_VAR_DIR": str(workdir / "var"),
                "BENCH_COMPONENTS": str(COMPONENTS),
            }
            env.pop("PROMETHEUS_MULTIPROC_DIR", None)
            manage = [bench.PYTHON, str(BASE_DIR / "manage.py")]
            print(f"Setting up: database {dbname}, {COMPONENTS} components, 90 days …", flush=True)
            subprocess.run([*manage, "migrate", "--no-input", "-v", "0"], env=env, check=True)
            started = time.perf_counter()
            setup = subprocess.run(
                [*manage, "shell", "-c", SETUP], env=env, check=True, capture_output=True, text=True
            )
            if os.environ.get("BENCH_PROFILE"):
                print(setup.stdout)
            refresh = next(line for line in setup.stdout.splitlines() if line.startswith("REFRESH"))
            print(f"Set up in {time.perf_counter() - started:.0f} s")
            figures = dict(part.split("=") for part in refresh.split()[1:])

            (workdir / "baseline_app.py").write_text(bench.BASELINE_APP)
            portal_port, baseline_port = bench.free_port(), bench.free_port()
            web_env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(workdir / "prometheus")}
            with (
                bench.gunicorn(
                    "opsportal.wsgi", env=web_env, port=portal_port, log=workdir / "web.log"
                ),
                bench.gunicorn(
                    "baseline_app",
                    env=env,
                    port=baseline_port,
                    log=workdir / "base.log",
                    chdir=workdir,
                ),
            ):
                bench.wait_until(
                    lambda: bench.get(portal_port, "/status/")[0] == 200, timeout=30, what="web"
                )
                bench.wait_until(
                    lambda: bench.get(baseline_port, "/")[0] == 200, timeout=30, what="baseline"
                )
                return report(portal_port, baseline_port, figures)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def report(portal_port: int, baseline_port: int, refresh: dict) -> int:
    baseline = bench.measure(baseline_port, "/", sequential=1000, per_client=250, headers={})
    rows = []
    for path, sequential, per_client, target in PAGES:
        # As browsers ask: the page goes out compressed (once per version, per process).
        f = bench.measure(
            portal_port, path, sequential=sequential, per_client=per_client, headers=BROWSER
        )
        if f["statuses"] != {200}:
            print(f"{path} answered {sorted(f['statuses'])}, not only 200")
            return 1
        rows.append((path, f, target))
    print()
    print(
        f"gunicorn, 2 sync workers, on 127.0.0.1; {COMPONENTS} components x 90 days; latency "
        f"from 1 sequential client, throughput from {bench.CLIENTS} concurrent clients"
    )
    header = (
        f"{'page':<20} {'n':>5} {'req/s':>7} {'p50 ms':>7} {'p95 ms':>7} {'target p95':>11} "
        f"{'met':>4} {'p95 x base':>11}"
    )
    print(header)
    print("-" * len(header))
    print(
        f"{'baseline (WSGI)':<20} {baseline['n']:>5} {baseline['rps']:>7.0f} "
        f"{baseline['p50']:>7.2f} {baseline['p95']:>7.2f} {'':>11} {'':>4} {1:>11.1f}"
    )
    met_all = True
    for path, f, target in rows:
        met = target is None or f["p95"] < target
        met_all &= met
        print(
            f"{path:<20} {f['n']:>5} {f['rps']:>7.0f} {f['p50']:>7.2f} {f['p95']:>7.2f} "
            f"{('< ' + format(target, 'g') + ' ms') if target else '—':>11} "
            f"{('yes' if met else 'NO') if target else '':>4} {f['p95'] / baseline['p95']:>11.1f}"
        )
    print()
    print(
        f"Refreshing the page (states, uptime, render; what each collection round adds): "
        f"first {refresh['first']} ms (computes 90 days), then p50 {refresh['p50']} ms, "
        f"max {refresh['max']} ms; page {int(refresh['bytes']) // 1024} KiB"
    )
    if not met_all:
        print("A target was missed (see 'met'); the baseline row shows this machine's noise.")
        return 1 if os.environ.get("BENCH_STRICT") == "1" else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
