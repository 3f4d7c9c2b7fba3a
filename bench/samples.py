"""Raw samples stored by day (issue 15): a fleet's week of 30-second samples in PostgreSQL's
day partitions, and what it costs to write a round, drop a day, read the pages and store it.

Registers 500 systems (HTTP endpoints: rows only, nothing is collected) with 20 series each
(10,000 series: one round is 10,000 samples), fills `--days` whole UTC days before today plus
today's last 3 hours at 30 s straight into the database (generate_series, a day partition built
then attached), and measures, each beside a baseline from the same run:
  - storing one round of 10,000 samples into a whole day's partition: `samples_store` (one
    COPY, then the newest-value upsert) against the previous code (bulk INSERTs of 2,000 rows); also the raw-sample write
    alone (COPY against the bulk INSERTs), rounds interleaved;
  - dropping a day: retention's fold-and-drop of the oldest whole day (`samples_downsample`,
    with the DETACH + DROP statements timed on their own) against a DELETE of the next day's
    rows (what retention did before);
  - the overview page (GET /admin/, 200 systems' sparklines over the last hour, read once per
    stored round by the worker that stored it: as views find them, right after a round, and
    as every view reads them without a shared cache; the worker's read timed on its own) and
    one system's page with its charts, p50/p95, against the same pages with no history
    stored;
  - the size of a day of samples (table and indexes) and per sample.
Targets: round p95 < 500 ms; drop < 5 s; pages p95 < 200 ms.

Runs with the test env (`make bench`); creates and drops its own database.

    python bench/samples.py [--systems 500] [--series 20] [--days 7] [--rounds 20] [--requests 30]

`--days 7` is the issue's scale (about 200 M rows and ~27 GB); a smaller `--days` keeps each
day at full density, so per-day figures (drop, DELETE, size per day) do not change with it.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import sys
import tempfile
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
ADMIN_DSN = os.environ.get("OPSPORTAL_TEST_PG_DSN", "postgres://postgres@127.0.0.1:5432/postgres")
PORTAL_DB = f"opsportal_bench_samples_{os.getpid()}"
INTERVAL = 30
AFTER_ROUND = "/admin/ after a round"
WORKER_READ = "the worker's read after a round"
UNSHARED = "/admin/ with no shared cache"
HTTP_METRICS = [
    "up",
    "collection_duration_ms",
    "http_latency_ms",
    "http_error",
    "http_latency_p50_ms",
    "http_latency_p95_ms",
    "http_error_rate_percent",
]


def admin(statement: str) -> None:
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(statement)


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--systems", type=int, default=500)
    parser.add_argument("--series", type=int, default=20)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--requests", type=int, default=30)
    args = parser.parse_args()
    if args.days == 1:
        parser.error(
            "--days must be 0 (pages and rounds only) or at least 2 (one day dropped, one deleted)"
        )
    workdir = Path(tempfile.mkdtemp(prefix="opsportal-bench-samples-"))
    admin(f'CREATE DATABASE "{PORTAL_DB}"')
    os.environ["DATABASE_URL"] = f"{ADMIN_DSN.rsplit('/', 1)[0]}/{PORTAL_DB}"
    os.environ["BACKUP_ROOT"] = str(workdir / "backups")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "opsportal.settings")
    try:
        run(args)
    finally:
        with contextlib.suppress(Exception):
            from django.db import connections

            connections.close_all()
        admin(f'DROP DATABASE IF EXISTS "{PORTAL_DB}" WITH (FORCE)')
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)


def run(args) -> None:
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.cache import cache
    from django.core.management import call_command
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from opsportal.monitoring import partitions, selectors, services
    from opsportal.monitoring.models import LatestValue, Sample
    from opsportal.systems.models import HttpEndpoint
    from tests.signin import TwoFactorClient as Client

    call_command("migrate", verbosity=0)
    print(f"registering {args.systems} systems ...", flush=True)
    systems = [
        HttpEndpoint.objects.create(name=f"api-{i:04d}", url=f"http://127.0.0.1:9/{i}/health")
        for i in range(args.systems)
    ]
    extra = args.series - len(HTTP_METRICS)
    series = [(s.pk, metric, "") for s in systems for metric in HTTP_METRICS[: args.series]] + [
        (s.pk, "container_cpu_percent", f"app-worker-{k:02d}")
        for s in systems
        for k in range(extra)
    ]
    print(f"{len(series)} series", flush=True)

    def round_values(at: dt.datetime) -> dict:
        return {key: (float(i % 97), at) for i, key in enumerate(series)}

    def legacy_samples(values: dict) -> None:  # the samples write before this change
        Sample.objects.bulk_create(
            [
                Sample(system_id=system_id, metric=metric, subject=subject, value=value, at=at)
                for (system_id, metric, subject), (value, at) in values.items()
            ],
            batch_size=2000,
        )

    def legacy_store(values: dict) -> None:  # the whole of samples_store before this change
        legacy_samples(values)
        LatestValue.objects.bulk_create(
            [
                LatestValue(
                    key=LatestValue.key_for(system_id, metric, subject),
                    system_id=system_id, metric=metric, subject=subject, value=value, at=at,
                )
                for (system_id, metric, subject), (value, at) in sorted(
                    values.items(), key=lambda kv: (kv[0][0] or 0, kv[0][1], kv[0][2])
                )
            ],
            update_conflicts=True, unique_fields=["key"], update_fields=["value", "at"],
            batch_size=2000,
        )  # fmt: skip

    def copy_samples(values: dict) -> None:
        with (
            connection.cursor() as cursor,
            cursor.copy(
                "COPY monitoring_sample (at, system_id, metric, subject, value) FROM STDIN"
            ) as copy,
        ):
            for (system_id, metric, subject), (value, at) in values.items():
                copy.write_row((at, system_id, metric, subject, value))

    now = timezone.now()
    services.samples_store(values=round_values(now))  # the newest values the overview shows

    user = get_user_model().objects.create_superuser("bench", "b@example.com", "bench-pw-123!")
    client = Client()
    client.force_login(user)
    system_url = f"/admin/systems/httpendpoint/{systems[0].pk}/change/"

    def pages() -> dict[str, tuple[list[float], int]]:
        client.force_login(user)  # again: the generation outlasts the session's idle timeout
        result = {}
        # The overview's sparklines are read once per stored round, by the worker that
        # stored its last share: measured as views find them between rounds, right after a
        # round (the stored mark moved, the worker's read timed on its own), and as every
        # view reads them when the cache is not shared (the try-out's local memory).
        for name, url, before in (
            ("/admin/", "/admin/", None),
            (AFTER_ROUND, "/admin/", "round"),  # also times the worker's read (WORKER_READ)
            (UNSHARED, "/admin/", "unshared"),
            (system_url, system_url, None),
        ):
            client.get(url)  # warm-up
            timings, queries, worker = [], 0, []
            for _ in range(args.requests):
                if before == "round":
                    selectors.overview_series_outdate()
                    started = time.perf_counter()
                    selectors.overview_series_refresh()
                    worker.append((time.perf_counter() - started) * 1000)
                elif before == "unshared":
                    cache.delete(selectors.SAMPLES_STORED_CACHE_KEY)
                with CaptureQueriesContext(connection) as ctx:
                    started = time.perf_counter()
                    response = client.get(url)
                    timings.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200, (url, response.status_code)
                queries = len(ctx.captured_queries)
            result[name] = (timings, queries)
            if worker:
                result[WORKER_READ] = (worker, 2)  # the systems, their samples
        selectors.overview_series_outdate()
        return result

    print("pages with no history stored (baseline) ...", flush=True)
    pages_empty = pages()

    # --- the history, straight into the database --------------------------------------
    today = now.astimezone(dt.UTC).date()
    days = [today - dt.timedelta(days=d) for d in range(args.days, 0, -1)]
    print(
        f"generating {len(days)} whole days + today's last 3 hours at {INTERVAL} s "
        f"({len(series) * 86400 // INTERVAL / 1e6:.1f} M samples a day) ...",
        flush=True,
    )
    generation_started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE UNLOGGED TABLE bench_series (system_id bigint, metric text, subject text)"
        )
        with cursor.copy("COPY bench_series FROM STDIN") as copy:
            for row in series:
                copy.write_row(row)

        def fill(table: str, start: dt.datetime, end: dt.datetime) -> None:
            cursor.execute(
                f"INSERT INTO {table} (at, system_id, metric, subject, value) "  # noqa: S608 (the bench's own tables)
                "SELECT ts, s.system_id, s.metric, s.subject, round((random() * 100)::numeric, 2) "
                f"FROM generate_series(%s::timestamptz, %s::timestamptz - interval '{INTERVAL} s', "
                f"interval '{INTERVAL} s') ts CROSS JOIN bench_series s",
                [start, end],
            )

        for day in days:
            day_started = time.perf_counter()
            name = partitions.partition_name(day)
            start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
            end = start + dt.timedelta(days=1)
            # Built on its own (no index upkeep per row), then attached: PostgreSQL checks
            # its range and builds its indexes once.
            cursor.execute(f"DROP TABLE IF EXISTS {name}")
            cursor.execute(f"CREATE TABLE {name} (LIKE monitoring_sample INCLUDING DEFAULTS)")
            fill(name, start, end)
            cursor.execute(
                f"ALTER TABLE monitoring_sample ATTACH PARTITION {name} "
                "FOR VALUES FROM (%s) TO (%s)",
                [start, end],
            )
            print(f"  {day}: {time.perf_counter() - day_started:.0f} s", flush=True)
        today_start = dt.datetime.combine(today, dt.time(), tzinfo=dt.UTC)
        # The last 3 hours up to now (the pages read the last one; a run that passed midnight
        # gets the new day's too), through the parent like the collector's.
        until = timezone.now().replace(microsecond=0)
        since = until - dt.timedelta(hours=3)
        if days:  # not into the whole days generated above
            since = max(today_start, since)
        fill("monitoring_sample", since, until)
        cursor.execute("ANALYZE monitoring_sample")
        generation_seconds = time.perf_counter() - generation_started
        cursor.execute("SELECT count(*) FROM monitoring_sample")
        stored = cursor.fetchone()[0]
        if days:
            cursor.execute(
                "SELECT pg_relation_size(%s), pg_indexes_size(%s)",
                [partitions.partition_name(days[-1])] * 2,
            )
            day_heap, day_indexes = cursor.fetchone()
            cursor.execute("SELECT count(*) FROM " + partitions.partition_name(days[-1]))  # noqa: S608
            day_rows = cursor.fetchone()[0]
    print(f"stored {stored:,} samples in {generation_seconds:.0f} s", flush=True)

    print("pages with the history stored ...", flush=True)
    pages_full = pages()

    # --- one round of 10,000 samples --------------------------------------------------
    print(f"storing {args.rounds} rounds each way ...", flush=True)
    timings: dict[str, list[float]] = {"store": [], "legacy": [], "copy": [], "inserts": []}
    queries: dict[str, int] = {}
    ways = {
        "store": lambda v: services.samples_store(values=v),
        "legacy": legacy_store,
        "copy": copy_samples,
        "inserts": legacy_samples,
    }
    # Into a whole day's partition (the largest today's gets, its indexes the deepest), at
    # 15 s past the generated samples' times.
    # (With --days 0: into today's, 15 s past the first of its last 3 hours.)
    at = (
        dt.datetime.combine(days[-1], dt.time(12), tzinfo=dt.UTC) if days else since
    ) + dt.timedelta(seconds=15)
    for _ in range(args.rounds):
        for name, way in ways.items():
            at += dt.timedelta(seconds=INTERVAL)
            values = round_values(at)
            with CaptureQueriesContext(connection) as ctx:
                started = time.perf_counter()
                way(values)
                timings[name].append((time.perf_counter() - started) * 1000)
            queries[name] = sum(  # statements writing raw samples
                q["sql"].startswith(("COPY monitoring_sample ", 'INSERT INTO "monitoring_sample" '))
                for q in ctx.captured_queries
            )

    if days:
        retention = drop_against_delete(days, settings, services, connection, CaptureQueriesContext)
    report(args, systems, days, stored, generation_seconds, timings, queries, pages_full,
           pages_empty, system_url)  # fmt: skip
    if days:
        folded, drop_seconds, retention_seconds, fold_seconds, deleted, delete_seconds = retention
        print(
            f"\ndrop a day ({folded:,} samples): DETACH + DROP {drop_seconds:.2f} s (target < 5 s); "
            f"retention in all {retention_seconds:.1f} s, of which folding into rollups "
            f"{fold_seconds:.1f} s"
        )
        print(f"  baseline: DELETE a day ({deleted:,} samples) {delete_seconds:.1f} s "
              f"(plus the vacuum it leaves behind, not measured)")  # fmt: skip
        print(
            f"size of a day ({day_rows:,} samples): {(day_heap + day_indexes) / 2**30:.2f} GiB "
            f"(table {day_heap / 2**30:.2f} GiB, indexes {day_indexes / 2**30:.2f} GiB), "
            f"{(day_heap + day_indexes) / max(day_rows, 1):.0f} bytes a sample; "
            f"7 days: {7 * (day_heap + day_indexes) / 2**30:.1f} GiB"
        )


def drop_against_delete(days, settings, services, connection, CaptureQueriesContext) -> tuple:
    oldest, deleted_day = days[0], days[1]
    retention_now = dt.datetime.combine(
        oldest + dt.timedelta(days=1 + settings.MONITORING_RAW_RETENTION_DAYS),
        dt.time(1),
        tzinfo=dt.UTC,
    )
    print(f"retention: fold and drop {oldest} ...", flush=True)
    with CaptureQueriesContext(connection) as ctx:
        started = time.perf_counter()
        folded = services.samples_downsample(now=retention_now)
        retention_seconds = time.perf_counter() - started
    drop_seconds = sum(
        float(q["time"])
        for q in ctx.captured_queries
        if q["sql"].startswith(("ALTER TABLE monitoring_sample DETACH", "DROP TABLE"))
    )
    fold_seconds = sum(
        float(q["time"])
        for q in ctx.captured_queries
        if "INSERT INTO monitoring_samplerollup" in q["sql"]
    )
    print(f"baseline: DELETE the samples of {deleted_day} ...", flush=True)
    start = dt.datetime.combine(deleted_day, dt.time(), tzinfo=dt.UTC)
    with connection.cursor() as cursor:
        started = time.perf_counter()
        cursor.execute(
            "DELETE FROM monitoring_sample WHERE at >= %s AND at < %s",
            [start, start + dt.timedelta(days=1)],
        )
        deleted = cursor.rowcount
        delete_seconds = time.perf_counter() - started
    return folded, drop_seconds, retention_seconds, fold_seconds, deleted, delete_seconds


def report(args, systems, days, stored, generation_seconds, timings, queries, pages_full,
           pages_empty, system_url) -> None:  # fmt: skip
    print()
    print(
        f"Samples by day: {len(systems)} systems x {args.series} series, {len(days)} whole days "
        f"+ the last 3 hours at {INTERVAL} s = {stored:,} samples (generated in {generation_seconds:.0f} s); "
        f"{os.cpu_count()} CPUs"
    )
    header = f"{'measure':<58}{'p50':>9}{'p95':>9}{'max':>9}{'writes':>7}{'target':>8}"
    print(header)
    rows = [
        (
            f"round of {len(systems) * args.series:,}: samples_store (COPY + upsert) ms",
            timings["store"],
            queries["store"],
            500,
        ),
        (
            "  baseline: previous code (bulk INSERTs + upsert) ms",
            timings["legacy"],
            queries["legacy"],
            None,
        ),
        (
            f"round of {len(systems) * args.series:,}: the samples' COPY alone ms",
            timings["copy"],
            queries["copy"],
            None,
        ),
        (
            "  baseline: the samples' bulk INSERTs alone ms",
            timings["inserts"],
            queries["inserts"],
            None,
        ),
    ]
    for url, label, target in (
        ("/admin/", "overview GET /admin/", 200),
        (AFTER_ROUND, "  right after a round", 200),
        (WORKER_READ, "  the worker's read after a round", None),
        (UNSHARED, "  every view reading them (no shared cache)", None),
        (system_url, "one system's page + charts", 200),
    ):
        rows.append((f"{label}, history ms", pages_full[url][0], pages_full[url][1], target))
        rows.append(("  baseline: no history ms", pages_empty[url][0], pages_empty[url][1], None))
    for name, values, stmts, target in rows:
        print(
            f"{name:<58}{p(values, 0.5):>9.1f}{p(values, 0.95):>9.1f}{max(values):>9.1f}"
            f"{stmts:>7}{(str(target) if target else '-'):>8}"
        )


if __name__ == "__main__":
    main()
