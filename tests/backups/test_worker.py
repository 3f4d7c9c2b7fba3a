"""Backups with a real Celery worker and a real broker: a worker SIGKILLed in the middle of
a backup of a pgbench database (scale 20), and a backup requested while the broker is
down."""

from __future__ import annotations

import re
import time

import psycopg
import pytest
import redis
from django.conf import settings as django_settings

from backups import services
from backups.models import Backup, BackupStatus, Verification
from backups.storage import storage_for
from opsportal.audit.models import AuditRecord
from tests.backups.conftest import PREFIX, admin_dsn, pgbench_init, recreate_database
from tests.backups.worker import backup_worker, kill_worker, worker_log
from tests.workers import RedisBroker, clear_queue, run_in_portal_process

pytestmark = pytest.mark.django_db(transaction=True)

BIG_DB = f"{PREFIX}_bk_big"


def files_under(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def wait_for_status(pk: int, statuses: set[str], timeout: float = 60.0) -> Backup:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        backup = Backup.objects.get(pk=pk)
        if backup.status in statuses:
            return backup
        time.sleep(0.05)
    raise AssertionError(f"backup {pk} stayed {Backup.objects.get(pk=pk).status}")


@pytest.fixture(scope="module")
def big_source_db():
    """pgbench scale 20 (2 million accounts): its dump takes seconds, long enough to kill
    the worker in the middle of it."""
    recreate_database(BIG_DB)
    pgbench_init(BIG_DB, 20)
    yield BIG_DB
    with psycopg.connect(admin_dsn(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{BIG_DB}" WITH (FORCE)')


@pytest.fixture
def requester(django_user_model):
    return django_user_model.objects.create_superuser("dana", "dana@example.com", "pw-dana-123!")


def test_a_worker_killed_mid_backup_is_failed_by_the_sweeper_naming_it(
    big_source_db, register_database, backup_root, tmp_path, settings, requester
):
    settings.BACKUP_HEARTBEAT_STALE_SECONDS = 3  # the worker beats every 0.5 s
    clear_queue(django_settings.CELERY_BROKER_URL)
    database = register_database("big-db", big_source_db)
    storage = storage_for("")

    with backup_worker(backup_root=backup_root, log_dir=tmp_path) as worker:
        backup = services.backup_request(database=database, actor=requester, reason="upgrade")
        running = wait_for_status(backup.pk, {BackupStatus.RUNNING})
        # The claim marks the row running a moment before it names the file it writes.
        deadline = time.monotonic() + 10
        while not running.file_name:
            assert time.monotonic() < deadline, "the running backup never named its file"
            time.sleep(0.02)
            running.refresh_from_db()
        partial = storage.partial_path(running.file_name)
        deadline = time.monotonic() + 30
        while not (partial.exists() and partial.stat().st_size > 1 << 20):
            assert time.monotonic() < deadline, "pg_dump never wrote its first MiB"
            time.sleep(0.02)
        kill_worker(worker)
        worker_name, worker_pid = worker.name, worker.pid

    running.refresh_from_db()
    assert running.status == BackupStatus.RUNNING  # nobody is left to finish it
    assert partial.exists()  # the kill gave the worker no chance to clean up
    # Within the heartbeat window the sweeper cannot tell a dead worker from a slow dump.
    assert services.backups_sweep()["failed"] == 0
    time.sleep(3.5)
    assert services.backups_sweep()["failed"] == 1

    failed = Backup.objects.get(pk=backup.pk)
    assert failed.status == BackupStatus.FAILED
    assert f"worker {worker_name} (pid {worker_pid}) sent no heartbeat since" in failed.message
    assert "its partial file was removed" in failed.message
    assert failed.size_bytes is None and failed.sha256 == ""
    assert files_under(backup_root) == []
    assert AuditRecord.objects.filter(
        object_type="backups.backup",
        object_id=str(backup.pk),
        outcome="failure",
        message__contains=worker_name,
    ).exists()
    # The database took nothing from it: no session of the dead worker is left behind.
    with psycopg.connect(admin_dsn(), autocommit=True) as conn:
        deadline = time.monotonic() + 10
        while conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [big_source_db]
        ).fetchone()[0]:
            assert time.monotonic() < deadline, "the killed worker's sessions stayed"
            time.sleep(0.1)

    # The next backup, on a new worker, succeeds (the unique "one running per database"
    # index no longer holds the dead run).
    with backup_worker(backup_root=backup_root, log_dir=tmp_path):
        retry = services.backup_request(database=database, actor=requester, reason="again")
        done = wait_for_status(retry.pk, {BackupStatus.SUCCEEDED, BackupStatus.FAILED}, 120)
        assert done.status == BackupStatus.SUCCEEDED, done.message
        verified = wait_for_verification(retry.pk)
    assert verified.verification == Verification.VERIFIED, verified.verification_message
    assert done.table_row_counts["public.pgbench_accounts"] == 2_000_000
    assert files_under(backup_root) == [done.file_name]


def wait_for_verification(pk: int, timeout: float = 120.0) -> Backup:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        backup = Backup.objects.get(pk=pk)
        if backup.verification != Verification.PENDING:
            return backup
        time.sleep(0.1)
    raise AssertionError(f"backup {pk} was never verified")


def test_requested_while_the_broker_is_down_runs_exactly_once_after_the_sweeper(
    source_database, backup_root, tmp_path, requester
):
    broker = RedisBroker()  # not started: the broker is down
    try:
        out = run_in_portal_process(
            "from django.contrib.auth import get_user_model\n"
            "from backups.services import backup_request\n"
            "from opsportal.systems.models import PostgresDatabase\n"
            f"database = PostgresDatabase.objects.get(pk={source_database.pk})\n"
            f"actor = get_user_model().objects.get(pk={requester.pk})\n"
            "backup = backup_request(database=database, actor=actor, reason='before upgrade')\n"
            "print('requested', backup.pk)",
            broker_url=broker.url,
        )
        backup = Backup.objects.get()
        assert f"requested {backup.pk}" in out
        assert backup.status == BackupStatus.QUEUED  # the request itself succeeded

        broker.start()
        # The message was lost with the broker: nothing is queued for a worker.
        assert redis.Redis.from_url(broker.url).llen("celery") == 0
        # Two sweeps (two beat ticks, or two beat processes by mistake) both find it
        # queued and dispatch it before any worker runs: the claim lets only one run it.
        sweeps = run_in_portal_process(
            "import datetime as dt\nfrom django.utils import timezone\n"
            "from backups.services import backups_sweep\n"
            "later = timezone.now() + dt.timedelta(seconds=61)\n"
            "print(backups_sweep(now=later))\nprint(backups_sweep(now=later))",
            broker_url=broker.url,
        )
        dispatched = sum(int(n) for n in re.findall(r"'redispatched': (\d+)", sweeps))
        assert dispatched == 2, sweeps
        with backup_worker(
            backup_root=backup_root, log_dir=tmp_path, broker_url=broker.url
        ) as worker:
            done = wait_for_status(backup.pk, {BackupStatus.SUCCEEDED, BackupStatus.FAILED})
            deadline = time.monotonic() + 60
            while worker_log(worker).count("Task backups.run[") < 2 * dispatched:
                # received + finished lines for each message
                assert time.monotonic() < deadline, worker_log(worker)[-3000:]
                time.sleep(0.1)
            log = worker_log(worker)

        assert done.status == BackupStatus.SUCCEEDED, done.message
        assert "'not queued'" in log  # the second message found it taken
        assert Backup.objects.count() == 1
        assert files_under(backup_root) == [done.file_name]
        assert (
            AuditRecord.objects.filter(
                object_type="backups.backup",
                object_id=str(backup.pk),
                outcome="success",
                message__startswith="Backup of",
            ).count()
            == 1
        )
    finally:
        broker.cleanup()
