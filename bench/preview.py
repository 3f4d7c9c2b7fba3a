"""Preview before acting (issue 14): how long the confirmation page's live read takes.

1. "Terminate idle connections" with 500 idle connections on the server (target: preview
   under 500 ms). Baseline in the same run: the read-only "Connection summary" operation's
   read of the same server (pg_activity.connection_summary).
2. "Clear cache" with a pattern over a database of 1,000,000 keys, half of them matching
   (target: under 2 s). Baseline in the same run: the SCAN walk "Clear cache" itself makes
   over the same keys (scan_iter, COUNT 1000) before it removes anything.

PostgreSQL: a private cluster started here with initdb/pg_ctl in /tmp (max_connections 600:
the shared test server allows 100), removed at the end. Redis: the test Redis database of
this checkout (OPSPORTAL_TEST_REDIS_URL, db OPSPORTAL_TEST_REDIS_TARGET_DB), which must be
empty; emptied again at the end.

Runs with the test env:  python bench/preview.py [--connections 500] [--keys 1000000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TARGET_CONNECTIONS_MS = 500
TARGET_CACHE_MS = 2000


def timed(function, repeat: int) -> list[float]:
    values = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        values.append((time.perf_counter() - started) * 1000)
    return values


def row(label: str, values: list[float]) -> str:
    return f"{label:60} {statistics.median(values):>9.1f} {max(values):>9.1f} {len(values):>4}"


def private_postgres(root: Path, port: int) -> None:
    from tests.realsystems import PG_BIN, _as_postgres_user

    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    data = root / "data"
    subprocess.run(
        _as_postgres_user([str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres",
                           "--auth=trust", "-E", "UTF8"]),
        check=True,
        capture_output=True,
    )  # fmt: skip
    subprocess.run(
        _as_postgres_user([str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(root / "log"),
                           "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1"
                           " -c max_connections=600 -c shared_buffers=32MB", "-w", "start"]),
        check=True,
        capture_output=True,
    )  # fmt: skip


def stop_postgres(root: Path) -> None:
    from tests.realsystems import PG_BIN, _as_postgres_user

    subprocess.run(
        _as_postgres_user([str(PG_BIN / "pg_ctl"), "-D", str(root / "data"), "-m", "immediate",
                           "stop"]),
        check=False,
        capture_output=True,
    )  # fmt: skip
    shutil.rmtree(root, ignore_errors=True)


def bench_connections(count: int, repeat: int) -> tuple[list[float], list[float], int]:
    from opsportal.operations.previews import operation_preview
    from opsportal.systems.adapters import pg_activity
    from opsportal.systems.models import PostgresDatabase
    from tests.realsystems import free_port

    root = Path(tempfile.mkdtemp(prefix="opsportal-bench-preview-pg-"))
    port = free_port()
    private_postgres(root, port)
    held = []
    try:
        dsn = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        held = [psycopg.connect(dsn, application_name="bench-leak") for _ in range(count)]
        database = PostgresDatabase(
            name="bench-db", host="127.0.0.1", port=port, dbname="postgres", username="postgres"
        )
        params = {"application_name": "", "user": "", "state": "any", "idle_seconds": 0}
        found = operation_preview(kind="db_terminate_idle", target=database, params=params)
        assert not found["failed"], found["failed"]
        previews = timed(
            lambda: operation_preview(kind="db_terminate_idle", target=database, params=params),
            repeat,
        )
        baseline = timed(lambda: pg_activity.connection_summary(database), repeat)
        return previews, baseline, found["total"]
    finally:
        for conn in held:
            conn.close()
        stop_postgres(root)


def bench_cache(keys: int, repeat: int) -> tuple[list[float], list[float], dict]:
    from opsportal.operations.previews import operation_preview
    from opsportal.systems.models import RedisCache

    url = redis.connection.parse_url(os.environ["OPSPORTAL_TEST_REDIS_URL"])
    db = int(os.environ["OPSPORTAL_TEST_REDIS_TARGET_DB"])
    client = redis.Redis(host=url.get("host", "127.0.0.1"), port=url.get("port", 6379), db=db)
    if client.dbsize():
        raise SystemExit(f"Redis db {db} is not empty: the bench fills and empties it.")
    try:
        pipe = client.pipeline(transaction=False)
        for n in range(keys):
            pipe.set(f"{'sess' if n % 2 else 'page'}:{n}", "x")
            if n % 10_000 == 9_999:
                pipe.execute()
        pipe.execute()
        cache = RedisCache(name="bench-cache", host=client.connection_pool.connection_kwargs[
            "host"], port=client.connection_pool.connection_kwargs["port"], db=db,
            timeout_seconds=5)  # fmt: skip
        params = {"pattern": "sess:*"}
        found = operation_preview(kind="cache_clear", target=cache, params=params)
        assert not found["failed"], found["failed"]
        previews = timed(
            lambda: operation_preview(kind="cache_clear", target=cache, params=params), repeat
        )
        baseline = timed(
            lambda: sum(1 for _ in client.scan_iter(match="sess:*", count=1000)), repeat
        )
        return previews, baseline, found
    finally:
        client.flushdb()
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=500)
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "opsportal.settings")
    import django

    django.setup()

    previews, baseline, total = bench_connections(args.connections, args.repeat)
    cache_previews, scan_walk, counted = bench_cache(args.keys, max(3, args.repeat // 4))
    print(f"\nPreview before acting: {args.connections} idle connections on a private PostgreSQL;"
          f" {args.keys} keys in Redis, half matching\n")  # fmt: skip
    print(f"{'measure':60} {'median ms':>9} {'max ms':>9} {'runs':>4}")
    print(row(f"preview 'Terminate idle connections' ({total} listed)", previews))
    print(row("baseline: 'Connection summary' read of the same server", baseline))
    figure = (
        f"{counted['count']} keys counted"
        if counted["complete"]
        else f"at least {counted['count']}, about {counted['estimate']}"
    )
    print(row(f"preview 'Clear cache' sess:* ({figure})", cache_previews))
    print(row("baseline: the SCAN walk 'Clear cache' makes (COUNT 1000)", scan_walk))
    worst_pg, worst_cache = max(previews), max(cache_previews)
    print(
        f"\nconnections: max {worst_pg:.0f} ms vs target {TARGET_CONNECTIONS_MS} ms: "
        f"{'ok' if worst_pg < TARGET_CONNECTIONS_MS else 'OVER'}; cache: max {worst_cache:.0f} ms "
        f"vs target {TARGET_CACHE_MS} ms: {'ok' if worst_cache < TARGET_CACHE_MS else 'OVER'}"
        f" (count {'complete' if counted['complete'] else 'stopped at its time cap'})"
    )


if __name__ == "__main__":
    main()
