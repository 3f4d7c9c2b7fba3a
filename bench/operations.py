"""Time from requesting an operation to its task starting on a real worker (Redis broker):
p50/p95 over 100 operations, with the time the operation itself took alongside.

Target (issue 3): request → start p95 under 500 ms. Baseline measured in the same run: a bare
round trip through the same broker to the same worker (a control ping it answers), so the
ratio shows what the row-first bookkeeping and dispatch add.

Everything lives in a database of its own and a private Redis broker, removed at the end.
Runs with the test env (`make bench`):  python bench/operations.py [--count 100]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
ADMIN_DSN = os.environ.get("OPSPORTAL_TEST_PG_DSN", "postgres://postgres@127.0.0.1:5432/postgres")
BENCH_DB = f"opsportal_bench_operations_{os.getpid()}"
TARGET_P95_MS = 500


def admin(statement: str) -> None:
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(statement)


def percentile(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=100)
    args = parser.parse_args()

    from tests import realsystems

    broker_port = realsystems.free_port()
    broker_dir = tempfile.mkdtemp(prefix="opsportal-bench-broker-")
    broker = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(broker_port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            broker_dir,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    realsystems.wait_for_port(broker_port)
    admin(f'CREATE DATABASE "{BENCH_DB}"')
    env = dict(os.environ)
    env["DATABASE_URL"] = ADMIN_DSN.rsplit("/", 1)[0] + "/" + BENCH_DB
    env["CELERY_BROKER_URL"] = f"redis://127.0.0.1:{broker_port}/0"
    os.environ.update(DATABASE_URL=env["DATABASE_URL"], CELERY_BROKER_URL=env["CELERY_BROKER_URL"])
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "opsportal.settings")
    worker = None
    try:
        import django

        django.setup()
        from django.core.management import call_command

        from opsportal.operations.models import Operation
        from opsportal.operations.services import operation_request
        from opsportal.systems.models import RedisCache

        call_command("migrate", verbosity=0)
        redis_url = os.environ.get("OPSPORTAL_TEST_REDIS_URL", "redis://127.0.0.1:6379")
        cache = RedisCache.objects.create(
            name="bench-cache", host="127.0.0.1", port=int(redis_url.rsplit(":", 1)[1]), db=0
        )
        log = Path(broker_dir) / "worker.log"
        with open(log, "wb") as handle:
            worker = subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "celery"),
                    "-A",
                    "opsportal",
                    "worker",
                    "--pool=solo",
                    "--without-mingle",
                    "--without-gossip",
                    "-n",
                    "bench@localhost",
                    "-l",
                    "WARNING",
                ],
                env=env,
                cwd=ROOT,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        from opsportal.celery import app

        deadline = time.monotonic() + 30
        while not app.control.ping(timeout=0.5):
            if time.monotonic() > deadline or worker.poll() is not None:
                raise RuntimeError("worker did not start:\n" + log.read_text()[-2000:])

        # Baseline: a bare round trip through the same broker to the same worker and back
        # (a control ping the worker answers), with no database row involved.
        baseline = []
        for _ in range(args.count):
            started = time.perf_counter()
            assert app.control.ping(destination=["bench@localhost"], timeout=2)
            baseline.append((time.perf_counter() - started) * 1000)

        delays, runs = [], []
        for _ in range(args.count):
            operation = operation_request(
                kind="cache_statistics", target=cache, params={}, actor=None, reason="bench"
            )
            while True:
                operation.refresh_from_db()
                if operation.finished:
                    break
                time.sleep(0.002)
            delays.append((operation.started_at - operation.requested_at).total_seconds() * 1000)
            runs.append((operation.finished_at - operation.started_at).total_seconds() * 1000)
        failed = Operation.objects.exclude(status="succeeded").count()

        p50, p95 = statistics.median(delays), percentile(delays, 95)
        print(
            f"\nOperations: {args.count} x cache_statistics on a real Redis, one worker (solo pool),"
            " Redis broker\n"
        )
        print(f"{'measure':48} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
        print(
            f"{'request → task started (row written to claim)':48} {p50:>8.1f} {p95:>8.1f} {max(delays):>8.1f}"
        )
        print(
            f"{'task started → finished (the Redis INFO call)':48} {statistics.median(runs):>8.1f} "
            f"{percentile(runs, 95):>8.1f} {max(runs):>8.1f}"
        )
        print(
            f"{'baseline: broker round trip to the worker (ping)':48} "
            f"{statistics.median(baseline):>8.1f} {percentile(baseline, 95):>8.1f} "
            f"{max(baseline):>8.1f}"
        )
        print(
            f"\np95 {p95:.1f} ms vs target {TARGET_P95_MS} ms: {'ok' if p95 < TARGET_P95_MS else 'OVER'};"
            f" p50 is {p50 / statistics.median(baseline):.1f}x the broker round trip; {failed} failed"
        )
    finally:
        if worker and worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(15)
        from django.db import connections

        connections.close_all()
        admin(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
        broker.terminate()
        broker.wait(10)
        shutil.rmtree(broker_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
