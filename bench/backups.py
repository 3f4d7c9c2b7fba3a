"""Backup and restore speed and memory against plain pg_dump / pg_restore.

For pgbench databases at two scales (default 10 and 50), in the same run:
  - a portal backup (streamed through the worker: SHA-256, temp-name-then-rename, row
    counts in the dump's snapshot) against `pg_dump -Fc` writing the file itself;
  - a portal restore (streamed from storage into pg_restore --single-transaction) against
    `pg_restore --clean --if-exists --single-transaction` reading the file itself;
  - the worker process's peak RSS while backing up (it streams, so it should not grow
    with the database).
Targets: portal time <= 1.05x plain; peak memory the same at both scales.

Runs with the test env (`make bench`). Everything it creates lives in its own databases
(a scratch portal database, the pgbench databases, restore targets) and a temp directory,
all removed at the end.

    python bench/backups.py [--scales 10 50] [--repeat 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
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
    parser.add_argument("--repeat", type=int, default=2)
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
    from backups import services
    from backups.models import BackupStatus
    from backups.storage import storage_for
    from opsportal.systems.adapters import pg_tools
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
    database = PostgresDatabase.objects.create(
        name=f"bench-s{scale}",
        host=info.get("host", "127.0.0.1"),
        port=int(info.get("port", 5432)),
        dbname=source,
        username=info.get("user", "postgres"),
    )
    services.backup_plan_ensure(database=database)
    with psycopg.connect(f"{ADMIN_DSN.rsplit('/', 1)[0]}/{source}") as conn:
        db_bytes = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]

    plain_dump, portal_dump, peak, verify_s = [], [], 0, 0.0
    plain_file = workdir / f"plain-{scale}.dump"
    backup = None
    for attempt in range(repeat):

        def plain() -> None:
            command = ["pg_dump", "-Fc", "-Z6", *pg_args(), "-f", str(plain_file), source]
            plain_dump.append(timed(command))

        # Alternate which goes first so neither always meets the other's checkpoint.
        if attempt % 2 == 0:
            plain()
        with PeakRss() as rss:
            started = time.perf_counter()
            backup = services.backup_run_now(database=database, reason="bench")
            total = time.perf_counter() - started
        if attempt % 2 == 1:
            plain()
        assert backup.status == BackupStatus.SUCCEEDED, backup.message
        portal_dump.append(backup.duration_seconds)
        verify_s = total - backup.duration_seconds
        peak = max(peak, rss.peak)

    plain_restore, portal_restore = [], []
    for attempt in range(repeat):
        target_plain = f"opsportal_bench_r{scale}_p{attempt}_{PID}"
        target_portal = f"opsportal_bench_r{scale}_q{attempt}_{PID}"
        for name in (target_plain, target_portal):
            admin(f'CREATE DATABASE "{name}"')
            created.append(name)

        def portal(attempt: int = attempt, target_portal: str = target_portal) -> None:
            target = PostgresDatabase.objects.create(
                name=f"bench-r{scale}-{attempt}",
                host=info.get("host", "127.0.0.1"),
                port=int(info.get("port", 5432)),
                dbname=target_portal,
                username=info.get("user", "postgres"),
            )
            storage = storage_for(backup.storage_location)
            run = pg_tools.restore(
                target, chunks=storage.read_chunks(backup.file_name), format=backup.format
            )
            portal_restore.append(run.duration_seconds)

        if attempt % 2 == 1:
            portal()
        plain_restore.append(
            timed(
                [
                    "pg_restore",
                    "--clean",
                    "--if-exists",
                    "--no-owner",
                    "--single-transaction",
                    *pg_args(),
                    "-d",
                    target_plain,
                    str(plain_file),
                ]
            )
        )
        if attempt % 2 == 0:
            portal()
        for name in (target_plain, target_portal):
            admin(f'DROP DATABASE "{name}" WITH (FORCE)')
            created.remove(name)
    return {
        "scale": scale,
        "db_mib": db_bytes / 2**20,
        "dump_mib": backup.size_bytes / 2**20,
        "plain_dump": min(plain_dump),
        "portal_dump": min(portal_dump),
        "verify": verify_s,
        "plain_restore": min(plain_restore),
        "portal_restore": min(portal_restore),
        "peak_rss_mib": peak / 2**20,
    }


def print_table(rows: list[dict]) -> None:
    print()
    print(
        f"{'scale':>5} {'db MiB':>8} {'dump MiB':>9} | {'pg_dump s':>9} {'portal s':>9} "
        f"{'ratio':>6} {'verify s':>8} | {'pg_restore s':>12} {'portal s':>9} {'ratio':>6} | "
        f"{'worker peak RSS MiB':>19}"
    )
    for r in rows:
        print(
            f"{r['scale']:>5} {r['db_mib']:>8.0f} {r['dump_mib']:>9.1f} | "
            f"{r['plain_dump']:>9.2f} {r['portal_dump']:>9.2f} "
            f"{r['portal_dump'] / r['plain_dump']:>6.3f} {r['verify']:>8.2f} | "
            f"{r['plain_restore']:>12.2f} {r['portal_restore']:>9.2f} "
            f"{r['portal_restore'] / r['plain_restore']:>6.3f} | {r['peak_rss_mib']:>19.1f}"
        )
    print(
        "\nTargets: portal/plain ratio <= 1.05 for backup and restore; worker peak RSS the "
        "same at every scale (the dump streams). 'verify s' (checksum re-read and a full "
        "pg_restore read-through) runs after the backup and is not in its time."
    )


if __name__ == "__main__":
    main()
