"""Backup and restore speed and memory against plain pg_dump / pg_restore.

For pgbench databases at two scales (default 10 and 50), in the same run:
  - a portal backup (streamed through the worker: SHA-256, temp-name-then-rename, row
    counts in the dump's snapshot) against `pg_dump -Fc` writing the file itself;
  - the restore step (the archive streamed from storage into pg_restore) against
    pg_restore reading the file itself, with the same flags;
  - the whole portal restore (checksum, session check, safety backup of the target,
    restore) against the same work done by hand (sha256sum, pg_dump -Fc, pg_restore);
  - the worker process's peak RSS while backing up (it streams, so it should not grow
    with the database).
Targets: portal time <= 1.05x plain; peak memory the same at both scales.

Runs with the test env (`make bench`). Everything it creates lives in its own databases
(a scratch portal database, the pgbench databases, restore targets) and a temp directory,
all removed at the end.

    python bench/backups.py [--scales 10 50] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
ADMIN_DSN = os.environ.get("OPSPORTAL_TEST_PG_DSN", "postgres://postgres@127.0.0.1:5432/postgres")
PID = os.getpid()
PORTAL_DB = f"opsportal_bench_portal_{PID}"


def admin(statement: str) -> None:
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(statement)


def conninfo() -> dict:
    return psycopg.conninfo.conninfo_to_dict(ADMIN_DSN)


def pg_args() -> list[str]:
    info = conninfo()
    return [
        "-h",
        info.get("host", "127.0.0.1"),
        "-p",
        str(info.get("port", 5432)),
        "-U",
        info.get("user", "postgres"),
    ]


class PeakRss(threading.Thread):
    """Samples this process's resident memory every 5 ms."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process()
        self.peak = self.process.memory_info().rss
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.005):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.join()


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scales", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--repeat", type=int, default=3)
    options = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="opsportal-bench-backups-"))
    base = ADMIN_DSN.rsplit("/", 1)[0]
    os.environ["DATABASE_URL"] = f"{base}/{PORTAL_DB}"
    os.environ["BACKUP_ROOT"] = str(workdir / "storage")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "opsportal.settings")
    created: list[str] = []
    try:
        admin(f'CREATE DATABASE "{PORTAL_DB}"')
        created.append(PORTAL_DB)
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        rows = [run_scale(scale, options.repeat, workdir, created) for scale in options.scales]
        print_table(rows)
    finally:
        from django.db import connections

        connections.close_all()
        for name in reversed(created):
            admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        shutil.rmtree(workdir, ignore_errors=True)


def run_scale(scale: int, repeat: int, workdir: Path, created: list[str]) -> dict:
    from django.contrib.auth import get_user_model

    from backups import services
    from backups.models import BackupStatus, RestoreStatus
    from backups.storage import storage_for
    from opsportal.systems.adapters import pg_tools, postgres
    from opsportal.systems.models import PostgresDatabase

    source = f"opsportal_bench_s{scale}_{PID}"
    admin(f'CREATE DATABASE "{source}"')
    created.append(source)
    print(f"pgbench -i -s {scale} ...", file=sys.stderr, flush=True)
    subprocess.run(
        ["pgbench", "-i", "-q", "-s", str(scale), *pg_args(), source],
        check=True,
        capture_output=True,
    )
    info = conninfo()

    def register(name: str, dbname: str) -> PostgresDatabase:
        return PostgresDatabase.objects.create(
            name=name,
            host=info.get("host", "127.0.0.1"),
            port=int(info.get("port", 5432)),
            dbname=dbname,
            username=info.get("user", "postgres"),
        )

    database = register(f"bench-s{scale}", source)
    services.backup_plan_ensure(database=database)
    with psycopg.connect(f"{ADMIN_DSN.rsplit('/', 1)[0]}/{source}") as conn:
        db_bytes = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    dba = get_user_model().objects.get_or_create(username="bench-dba", is_superuser=True)[0]

    # --- backup: pg_dump -Fc to a file vs the portal's backup, interleaved ---------------
    plain_dump, portal_dump, counts_alone, verify = [], [], [], []
    peak = 0
    plain_file = workdir / f"plain-{scale}.dump"
    backup = None
    for attempt in range(repeat):

        def plain() -> None:
            command = ["pg_dump", "-Fc", "-Z6", *pg_args(), "-f", str(plain_file), source]
            plain_dump.append(timed(command))

        def portal() -> None:
            nonlocal backup, peak
            with PeakRss() as rss:
                started = time.perf_counter()
                backup = services.backup_run_now(database=database, reason="bench")
                total = time.perf_counter() - started
            assert backup.status == BackupStatus.SUCCEEDED, backup.message
            portal_dump.append(backup.duration_seconds)
            verify.append(total - backup.duration_seconds)
            peak = max(peak, rss.peak)

        # Alternate which goes first so neither always meets the other's checkpoint.
        for step in (plain, portal) if attempt % 2 == 0 else (portal, plain):
            step()
        # What the portal does beyond pg_dump: exact row counts in the dump's snapshot
        # (run beside pg_dump in the backup), timed here on their own.
        with postgres.connect(database, statement_timeout_ms=0) as conn:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            conn.execute("SET LOCAL max_parallel_workers_per_gather = 0")
            conn.execute("SET LOCAL jit = off")
            started = time.perf_counter()
            services.table_row_counts(conn)
            counts_alone.append(time.perf_counter() - started)
            conn.execute("COMMIT")

    # --- restore ---------------------------------------------------------------------------
    flags = ["--clean", "--if-exists", "--no-owner", "--exit-on-error", "--single-transaction"]
    storage = storage_for(backup.storage_location)
    plain_step, portal_step, plain_whole, portal_whole = [], [], [], []
    for attempt in range(repeat):
        target_plain = f"opsportal_bench_r{scale}_p{attempt}_{PID}"
        target_portal = f"opsportal_bench_r{scale}_q{attempt}_{PID}"
        for name in (target_plain, target_portal):
            admin(f'CREATE DATABASE "{name}"')
            created.append(name)
        target = register(f"bench-r{scale}-{attempt}", target_portal)

        def plain_restore(target_plain: str = target_plain) -> None:
            plain_step.append(
                timed(["pg_restore", *flags, *pg_args(), "-d", target_plain, str(plain_file)])
            )

        def portal_restore(target: PostgresDatabase = target) -> None:
            run = pg_tools.restore(
                target, chunks=storage.read_chunks(backup.file_name), format=backup.format
            )
            portal_step.append(run.duration_seconds)

        # 1. The restore step alone, into empty databases: pg_restore reading the file vs
        #    the portal streaming it from storage into pg_restore's stdin; same flags.
        for step in (
            (plain_restore, portal_restore) if attempt % 2 == 0 else (portal_restore, plain_restore)
        ):
            step()

        # 2. The whole restore over a database that holds the data (the runbook's restore
        #    of the original): the portal's checksum re-read, session check, safety backup
        #    of the target and restore, vs the same work by hand: sha256sum of the file,
        #    pg_dump -Fc of the target, pg_restore.
        def plain_whole_restore(target_plain: str = target_plain) -> None:
            started = time.perf_counter()
            subprocess.run(["sha256sum", str(plain_file)], check=True, capture_output=True)
            safety = workdir / f"safety-{target_plain}.dump"
            dump = ["pg_dump", "-Fc", "-Z6", *pg_args(), "-f", str(safety), target_plain]
            subprocess.run(dump, check=True, capture_output=True)
            restore = ["pg_restore", *flags, *pg_args(), "-d", target_plain, str(plain_file)]
            subprocess.run(restore, check=True, capture_output=True)
            plain_whole.append(time.perf_counter() - started)

        def portal_whole_restore(target: PostgresDatabase = target) -> None:
            restore = services.restore_request(
                backup=backup,
                target=target,
                actor=dba,
                reason="bench",
                confirmation=target.name,
                dispatch=False,
            )
            started = time.perf_counter()
            restore = services.restore_run(restore_id=restore.pk)
            portal_whole.append(time.perf_counter() - started)
            assert restore.status == RestoreStatus.SUCCEEDED, restore.message

        for step in (
            (plain_whole_restore, portal_whole_restore)
            if attempt % 2 == 0
            else (portal_whole_restore, plain_whole_restore)
        ):
            step()
        for name in (target_plain, target_portal):
            admin(f'DROP DATABASE "{name}" WITH (FORCE)')
            created.remove(name)
    return {
        "scale": scale,
        "db_mib": db_bytes / 2**20,
        "dump_mib": backup.size_bytes / 2**20,
        "plain_dump": median(plain_dump),
        "portal_dump": median(portal_dump),
        "dump_ratio": median([p / q for p, q in zip(portal_dump, plain_dump, strict=True)]),
        "counts": median(counts_alone),
        "verify": median(verify),
        "plain_restore": median(plain_step),
        "portal_restore": median(portal_step),
        "restore_ratio": median([p / q for p, q in zip(portal_step, plain_step, strict=True)]),
        "plain_whole": median(plain_whole),
        "portal_whole": median(portal_whole),
        "whole_ratio": median([p / q for p, q in zip(portal_whole, plain_whole, strict=True)]),
        "peak_rss_mib": peak / 2**20,
    }


def print_table(rows: list[dict]) -> None:
    print()
    print(
        f"{'scale':>5} {'db MiB':>7} {'dump MiB':>8} | {'pg_dump':>7} {'portal':>7} "
        f"{'ratio':>6} {'counts':>6} {'verify':>6} | {'pg_restore':>10} {'portal':>7} "
        f"{'ratio':>6} | {'by hand':>7} {'portal':>7} {'ratio':>6} | {'peak RSS MiB':>12}"
    )
    for r in rows:
        print(
            f"{r['scale']:>5} {r['db_mib']:>7.0f} {r['dump_mib']:>8.1f} | "
            f"{r['plain_dump']:>7.2f} {r['portal_dump']:>7.2f} {r['dump_ratio']:>6.3f} "
            f"{r['counts']:>6.2f} {r['verify']:>6.2f} | "
            f"{r['plain_restore']:>10.2f} {r['portal_restore']:>7.2f} {r['restore_ratio']:>6.3f} | "
            f"{r['plain_whole']:>7.2f} {r['portal_whole']:>7.2f} {r['whole_ratio']:>6.3f} | "
            f"{r['peak_rss_mib']:>12.1f}"
        )
    print(
        """
Seconds, median of the runs; ratio = median of the per-run portal/plain ratios (runs
interleaved, order alternated). Each side does:
  backup   pg_dump:  pg_dump -Fc -Z6 -f FILE (pg_dump fsyncs the file)
           portal:   pg_dump --format=custom --compress=6 --snapshot=S to a pipe, SHA-256 and
                     size while streaming, write to a .partial name, fsync, rename, fsync
                     the directory, and exact row counts of every table in snapshot S on a
                     second connection beside pg_dump ('counts': those counts timed alone).
                     'verify' (checksum re-read, pg_restore read-through, --list) runs after
                     the backup is written and is not in its time.
  restore  pg_restore: pg_restore --clean --if-exists --no-owner --exit-on-error
                     --single-transaction -d TARGET FILE, into an empty database
           portal:   the same pg_restore flags, the archive streamed from storage to its stdin
  whole    by hand:  sha256sum FILE; pg_dump -Fc of the target; pg_restore as above, over a
                     database holding the data
           portal:   restore_run: checksum re-read, session check, safety backup of the
                     target (a full portal backup), pg_restore as above
Targets: backup and restore ratio <= 1.05; peak RSS the same at every scale (it streams)."""
    )


def median(values: list[float]) -> float:
    return statistics.median(values)


if __name__ == "__main__":
    main()
