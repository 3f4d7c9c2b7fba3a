"""Requesting and running backups.

A backup is a row first (queued) and a worker's run second; the run claims the row, so a
redelivered message does nothing, and a partial unique index on running rows means two
runs for one database never overlap. While it dumps, a heartbeat marks the run alive so the
sweeper (backups/services/sweeping.py) can tell a dead worker from a slow dump."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import socket
import threading
import time

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from backups.models import Backup, BackupFormat, BackupMethod, BackupStatus, BackupTrigger
from backups.services._common import (
    DEFAULT_TIME_LIMIT_SECONDS,
    _backup_create,
    _dispatch_backup,
    logger,
)
from backups.services.alerts import _alert_database_admins
from backups.services.retention import backup_plan_apply_retention
from backups.services.verification import backup_verify
from backups.storage import StorageError, storage_for
from opsportal.audit.models import AuditAction, AuditOutcome
from opsportal.audit.services import audit_record
from opsportal.jobs import job_claim, job_heartbeat
from opsportal.refusals import ServiceRefused
from opsportal.systems.adapters import pg_tools, postgres
from opsportal.systems.adapters.errors import AdapterError
from opsportal.systems.models import PostgresDatabase

# Defaults of BACKUP_HEARTBEAT_SECONDS and BACKUP_HEARTBEAT_STALE_SECONDS: a running
# backup whose heartbeat is older than the stale window lost its worker (six missed beats:
# a slow dump still beats, a killed worker is noticed within about half a minute).
HEARTBEAT_SECONDS = 5
HEARTBEAT_STALE = dt.timedelta(seconds=30)


def heartbeat_seconds() -> float:
    return float(getattr(settings, "BACKUP_HEARTBEAT_SECONDS", HEARTBEAT_SECONDS))


def heartbeat_stale() -> dt.timedelta:
    seconds = getattr(settings, "BACKUP_HEARTBEAT_STALE_SECONDS", None)
    return dt.timedelta(seconds=seconds) if seconds is not None else HEARTBEAT_STALE


def this_worker() -> str:
    """Names the process running a backup, so a lost run says which worker was lost."""
    return f"{socket.gethostname()} (pid {os.getpid()})"


class BackupBusy(ServiceRefused):
    """Another backup of the same database is running; try again later."""


def backup_request(
    *,
    database: PostgresDatabase,
    actor: object | None = None,
    reason: str = "",
    trigger: str = BackupTrigger.MANUAL,
) -> Backup:
    """Record a backup of `database` as queued and run it on a worker after commit.

    Poll `Backup.status` until "succeeded" or "failed".
    """
    # The row, its audit record and the queued task together, or none of them.
    with transaction.atomic():
        backup = _backup_create(database=database, actor=actor, reason=reason, trigger=trigger)
        audit_record(
            action=AuditAction.OPERATION,
            obj=backup,
            actor=actor,
            outcome=AuditOutcome.REQUESTED,
            message=f"Backup of {database} requested ({trigger})"
            + (f": {reason}" if reason else ""),
        )
        _dispatch_backup(backup)
    return backup


def backup_run_now(
    *,
    database: PostgresDatabase,
    actor: object | None = None,
    reason: str = "",
    trigger: str = BackupTrigger.CLI,
) -> Backup:
    """Record and run a backup in this process (`manage.py backup_now`), no worker needed."""
    backup = _backup_create(database=database, actor=actor, reason=reason, trigger=trigger)
    audit_record(
        action=AuditAction.OPERATION,
        obj=backup,
        actor=actor,
        outcome=AuditOutcome.REQUESTED,
        message=f"Backup of {database} requested ({trigger})" + (f": {reason}" if reason else ""),
    )
    return backup_run(backup_id=backup.pk) or backup


def _file_name(backup: Backup) -> str:
    extension = {BackupFormat.CUSTOM: "dump", BackupFormat.PLAIN: "sql"}[backup.format]
    if backup.format == BackupFormat.PLAIN and backup.compression:
        extension += ".gz"
    stamp = (backup.started_at or timezone.now()).strftime("%Y%m%dT%H%M%SZ")
    return f"{backup.database.name}/{stamp}-{backup.pk}.{extension}"


def backup_claim(*, backup_id: int, worker: str = "") -> Backup | None:
    """Take the queued backup for this worker; None if someone else has it.

    Raises BackupBusy while another backup of the same database is running.
    """
    now = timezone.now()
    try:
        with transaction.atomic():
            # The database's "one running backup per database" constraint refuses a second
            # claim with IntegrityError: that rule stays the backup's own.
            claimed = job_claim(
                Backup,
                backup_id,
                from_status=BackupStatus.QUEUED,
                to_status=BackupStatus.RUNNING,
                started_at=now,
                heartbeat_at=now,
                worker=(worker or this_worker())[:255],
            )
    except IntegrityError as exc:
        raise BackupBusy(
            f"Another backup of this database is running (backup #{backup_id})."
        ) from exc
    if not claimed:
        return None
    backup = Backup.objects.select_related("database", "database__docker_engine", "plan").get(
        pk=backup_id
    )
    backup.file_name = _file_name(backup)
    Backup.objects.filter(pk=backup.pk).update(file_name=backup.file_name)
    return backup


def backup_run(*, backup_id: int, worker: str = "") -> Backup | None:
    """Run a queued backup: claim it, dump, verify, apply the plan's retention."""
    backup = backup_claim(backup_id=backup_id, worker=worker)
    if backup is None:
        return None
    _backup_execute(backup)
    if getattr(backup, "outlived_its_row", False):
        return backup  # failed as lost meanwhile: the sweeper told the DBAs and re-ran it
    if backup.status == BackupStatus.SUCCEEDED:
        backup_verify(backup=backup)
        if backup.plan_id and backup.trigger == BackupTrigger.SCHEDULED:
            backup_plan_apply_retention(plan=backup.plan)
    elif backup.trigger == BackupTrigger.SCHEDULED:
        _alert_database_admins(
            plan=backup.plan,
            about=backup,
            subject=f"Scheduled backup of {backup.database} failed",
            body=backup.message,
        )
    return backup


def _backup_outlived_its_row(backup: Backup) -> None:
    """The sweeper failed this backup while it was still running (its heartbeat stalled for
    longer than BACKUP_HEARTBEAT_STALE_SECONDS, e.g. the portal database was too slow to
    take it) and may have started a re-run: the failed row stands, and what this run wrote
    is removed so that no file exists that no row vouches for."""
    row = Backup.objects.get(pk=backup.pk)
    backup.outlived_its_row = True
    if backup.status == BackupStatus.SUCCEEDED and backup.file_name:
        try:
            storage_for(backup.storage_location).delete(backup.file_name)
        except (StorageError, OSError):
            logger.warning("Could not remove the file of backup #%s", backup.pk)
    backup.status, backup.message = row.status, row.message
    audit_record(
        action=AuditAction.OPERATION,
        obj=backup,
        outcome=AuditOutcome.FAILURE,
        message=(
            f"Backup of {backup.database} finished after it had been failed as lost "
            f"({row.get_status_display().lower()}); its result was discarded"
        ),
    )


class _Heartbeat(threading.Thread):
    """Marks the running backup alive so the sweeper can tell a dead worker from a slow
    dump."""

    def __init__(self, backup_id: int) -> None:
        super().__init__(daemon=True, name=f"backup-heartbeat-{backup_id}")
        self.backup_id = backup_id
        self.stopped = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopped.wait(heartbeat_seconds()):
                try:
                    job_heartbeat(Backup, self.backup_id, running_status=BackupStatus.RUNNING)
                except Exception:
                    # Keep beating: one missed update (the portal's database briefly away)
                    # must not make a live backup look abandoned.
                    logger.warning("Backup heartbeat failed; trying again", exc_info=True)
                    connection.close()
        finally:
            connection.close()


# The row counts moved to the adapter with the rest of the SQL run on targets; the name stays
# here for bench/backups.py.
table_row_counts = postgres.table_row_counts


class _Counter(threading.Thread):
    def __init__(self, conn) -> None:
        super().__init__(daemon=True, name="backup-row-counts")
        self.conn = conn
        self.counts: dict[str, int] = {}
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.counts = postgres.table_row_counts(self.conn)
        except BaseException as exc:
            self.error = exc


def _backup_execute(backup: Backup) -> None:
    """Dump into storage under a temporary name, hashing as it streams; record the outcome.

    The row counts are taken in the very snapshot pg_dump dumps (exported with
    pg_export_snapshot), concurrently with the dump, so the drill can compare exactly.
    """
    database = backup.database
    started = time.monotonic()
    limit = backup.plan.time_limit_seconds if backup.plan else DEFAULT_TIME_LIMIT_SECONDS
    heartbeat = _Heartbeat(backup.pk)
    heartbeat.start()
    hasher = hashlib.sha256()
    written = 0
    try:
        storage = storage_for(backup.storage_location)
        dump = (
            pg_tools.dump_in_container if backup.method == BackupMethod.CONTAINER else pg_tools.dump
        )
        with postgres.dump_snapshot(database, statement_timeout_ms=limit * 1000) as shared:
            backup.server_version = shared.server_version
            counter = _Counter(shared.connection)
            counter.start()
            try:
                with storage.writer(backup.file_name) as handle:

                    def sink(chunk: bytes) -> None:
                        nonlocal written
                        hasher.update(chunk)
                        handle.write(chunk)
                        written += len(chunk)

                    run = dump(
                        database,
                        sink=sink,
                        format=backup.format,
                        compression=backup.compression,
                        snapshot=shared.snapshot,
                        time_limit_seconds=limit,
                    )
            except BaseException:
                # The snapshot's connection closes when this block ends; the counter must not
                # be left using it (a psycopg connection closed under a running query crashes
                # the process), so its query is cancelled and the thread awaited first.
                shared.connection.cancel_safe()
                counter.join()
                raise
            counter.join()
            if counter.error:
                raise counter.error
    except (AdapterError, StorageError) as exc:
        messages = getattr(exc, "messages", "")
        backup.status = BackupStatus.FAILED
        backup.message = str(exc) + (f"\n\npg_dump said:\n{messages}" if messages else "")
    except Exception as exc:
        logger.exception("Backup #%s failed unexpectedly", backup.pk)
        backup.status = BackupStatus.FAILED
        backup.message = f"Unexpected error: {type(exc).__name__}: {exc}"
    else:
        backup.status = BackupStatus.SUCCEEDED
        backup.size_bytes = written
        backup.sha256 = hasher.hexdigest()
        backup.table_row_counts = counter.counts
        backup.message = run.messages
    finally:
        heartbeat.stopped.set()
    backup.finished_at = timezone.now()
    backup.duration_seconds = round(time.monotonic() - started, 3)
    if backup.status == BackupStatus.FAILED:
        backup.size_bytes, backup.sha256 = None, ""
    recorded = Backup.objects.filter(pk=backup.pk, status=BackupStatus.RUNNING).update(
        status=backup.status,
        finished_at=backup.finished_at,
        duration_seconds=backup.duration_seconds,
        size_bytes=backup.size_bytes,
        sha256=backup.sha256,
        server_version=backup.server_version,
        table_row_counts=backup.table_row_counts,
        message=backup.message,
    )
    if not recorded:
        _backup_outlived_its_row(backup)
        return
    ok = backup.status == BackupStatus.SUCCEEDED
    audit_record(
        action=AuditAction.OPERATION,
        obj=backup,
        actor=backup.requested_by,
        outcome=AuditOutcome.SUCCESS if ok else AuditOutcome.FAILURE,
        message=(
            f"Backup of {database} written: {backup.file_name}, {backup.size_bytes} bytes, "
            f"sha256 {backup.sha256}, {backup.duration_seconds:.1f} s"
            if ok
            else f"Backup of {database} failed: {backup.message.splitlines()[0]}"
        ),
    )
