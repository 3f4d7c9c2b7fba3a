"""Backups with a real Celery worker and a real broker: a worker SIGKILLed in the middle of
a backup of a pgbench database (scale 20), a scheduled backup whose worker is SIGKILLed
while pg_dump waits on a locked table (failed fast, the DBAs told, run again once), and a
backup requested while the broker is down."""

from __future__ import annotations

import datetime as dt
import re
import time

import psutil
import psycopg
import pytest
import redis
from django.conf import settings as django_settings
from django.utils import timezone

from backups import services
from backups.models import Backup, BackupPlan, BackupStatus, BackupTrigger, Verification
from backups.storage import storage_for
from opsportal.audit.models import AuditRecord
from opsportal.defaults import load_defaults
from opsportal.people.models import (
    Notification,
    NotificationChannelKind,
    NotificationStatus,
    Responsibility,
    Team,
)
from tests.backups.conftest import PREFIX, admin_dsn, pgbench_init, recreate_database
from tests.backups.worker import backup_worker, kill_worker, worker_log
from tests.realsystems import smtp_server
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


def await_(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, what
        time.sleep(0.1)
    return result


def test_a_scheduled_backup_whose_worker_is_killed_is_failed_fast_told_and_run_again_once(
    pgbench_source_db, register_database, backup_root, tmp_path, settings
):
    """The try-out's failure: a worker SIGKILLed during a backup left the row "Running" for
    two minutes, then it was failed silently and never retried."""
    stale = settings.BACKUP_HEARTBEAT_STALE_SECONDS = 3  # the worker beats every 0.5 s
    clear_queue(django_settings.CELERY_BROKER_URL)
    load_defaults()
    dbas = Team.objects.get(responsibility=Responsibility.DATABASE)
    dbas.email = "dba@example.com"
    dbas.save()
    database = register_database("orders-db", pgbench_source_db)
    plan = BackupPlan.objects.get(database=database)  # given to it at registration
    # A real slow dump: pg_dump waits for a table an application holds locked.
    locker = psycopg.connect(admin_dsn().rsplit("/", 1)[0] + "/" + pgbench_source_db)
    locker.execute("LOCK TABLE pgbench_accounts IN ACCESS EXCLUSIVE MODE")
    try:
        with smtp_server() as smtp:
            mail = {
                "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
                "EMAIL_HOST": "127.0.0.1",
                "EMAIL_PORT": str(smtp.port),
            }
            with backup_worker(backup_root=backup_root, log_dir=tmp_path, **mail) as worker:
                scheduled = services.backup_plan_run_scheduled(plan_id=plan.pk)
                wait_for_status(scheduled.pk, {BackupStatus.RUNNING})
                with psycopg.connect(admin_dsn(), autocommit=True) as conn:
                    # pg_dump and the row counts of its snapshot both wait for the table.
                    await_(
                        lambda: (
                            conn.execute(
                                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND "
                                "wait_event_type = 'Lock' AND query ILIKE '%%pgbench_accounts%%'",
                                [pgbench_source_db],
                            ).fetchone()[0]
                            >= 2
                        ),
                        30,
                        "pg_dump never waited on the locked table",
                    )
                assert any(p.name() == "pg_dump" for p in psutil.Process(worker.pid).children())
                kill_worker(worker)
                killed_at = time.monotonic()

            # The sweep beat runs every 10 s, run here every 0.1 s: nothing within the
            # heartbeat window, the row failed as soon as it is past it.
            assert services.backups_fail_abandoned() == 0
            await_(services.backups_fail_abandoned, stale + 5, "the row was never failed")
            detected_after = time.monotonic() - killed_at
            assert detected_after <= stale + 1.0, detected_after

            failed = Backup.objects.get(pk=scheduled.pk)
            assert failed.status == BackupStatus.FAILED
            assert f"worker {worker.name} (pid {worker.pid}) sent no heartbeat" in failed.message
            retry = Backup.objects.get(retry_of=failed)
            assert (retry.trigger, retry.status) == (BackupTrigger.SCHEDULED, BackupStatus.QUEUED)
            assert AuditRecord.objects.filter(
                object_type="backups.backup",
                object_id=str(retry.pk),
                outcome="requested",
                message__contains=f"re-run automatically (once): scheduled backup #{failed.pk}",
            ).exists()
            [page] = Notification.objects.filter(
                responsibility=Responsibility.DATABASE, channel=NotificationChannelKind.EMAIL
            )
            assert page.recipient == "dba@example.com"
            assert page.subject == f"Backup #{failed.pk} of orders-db failed: its worker was lost"
            assert f"It is being run again, once, as backup #{retry.pk}." in page.body
            # Never twice: a second sweep finds nothing, and a re-run is not re-run.
            assert services.backups_fail_abandoned() == 0
            assert services._backup_retry(retry) is None

            locker.rollback()  # the application lets go of the table
            with backup_worker(backup_root=backup_root, log_dir=tmp_path, **mail):
                done = wait_for_status(retry.pk, {BackupStatus.SUCCEEDED, BackupStatus.FAILED}, 120)
                await_(
                    lambda: Notification.objects.get(pk=page.pk).status == NotificationStatus.SENT,
                    60,
                    "the page to the DBAs was never delivered",
                )
            [message] = smtp.messages
    finally:
        locker.close()

    assert done.status == BackupStatus.SUCCEEDED, done.message
    assert message["to"] == ["dba@example.com"]
    assert f"It is being run again, once, as backup #{retry.pk}." in message["data"]
    assert Backup.objects.filter(database=database).count() == 2


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
        assert redis.Redis.from_url(broker.url).llen("backups") == 0
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


def test_a_live_backup_failed_as_lost_does_not_overwrite_its_row_when_it_finishes(
    pgbench_source_db, register_database, backup_root, tmp_path, requester
):
    """A worker that is alive but whose heartbeat could not be written for longer than the
    threshold (a slow portal database) is failed as lost, and a scheduled one re-run; when
    the original dump finishes after all, the failed row stands and nothing it wrote is
    left without a row vouching for it."""
    clear_queue(django_settings.CELERY_BROKER_URL)
    database = register_database("slow-db", pgbench_source_db)
    locker = psycopg.connect(admin_dsn().rsplit("/", 1)[0] + "/" + pgbench_source_db)
    locker.execute("LOCK TABLE pgbench_accounts IN ACCESS EXCLUSIVE MODE")
    try:
        with backup_worker(backup_root=backup_root, log_dir=tmp_path):
            backup = services.backup_request(database=database, actor=requester, reason="x")
            wait_for_status(backup.pk, {BackupStatus.RUNNING})
            # As the sweeper sees it once the heartbeat is an hour old.
            later = timezone.now() + dt.timedelta(hours=1)
            assert services.backups_fail_abandoned(now=later) == 1
            failed_message = Backup.objects.get(pk=backup.pk).message
            locker.rollback()  # the dump goes on and finishes
            await_(
                lambda: AuditRecord.objects.filter(
                    object_type="backups.backup",
                    object_id=str(backup.pk),
                    message__contains="finished after it had been failed as lost",
                ).exists(),
                120,
                "the worker never finished the dump it was running",
            )
    finally:
        locker.close()
    row = Backup.objects.get(pk=backup.pk)
    assert (row.status, row.message) == (BackupStatus.FAILED, failed_message)
    assert row.size_bytes is None and row.sha256 == ""
    assert files_under(backup_root) == []
