"""Backups, verification, restores, drills and retention: every state change of the app.

A backup is a row first (queued) and a worker's run second; the run claims the row, so a
redelivered message does nothing, and a partial unique index on running rows means two
runs for one database never overlap.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import logging
import os
import secrets
import socket
import threading
import time
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

from celery.schedules import crontab
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from backups.models import (
    Backup,
    BackupFormat,
    BackupMethod,
    BackupPlan,
    BackupStatus,
    BackupTrigger,
    ConfigurationChange,
    DrillResult,
    OperationStatus,
    Restore,
    RestoreDrill,
    Verification,
)
from backups.storage import StorageError, storage_for
from opsportal.audit import context
from opsportal.audit.checkpoints import Checkpoint, checkpoint_make
from opsportal.audit.models import AuditAction, AuditOutcome
from opsportal.audit.services import audit_record
from opsportal.people.models import Responsibility
from opsportal.people.services import notify
from opsportal.queueing import enqueue_after_commit
from opsportal.systems.adapters import pg_tools, postgres
from opsportal.systems.adapters.errors import AdapterError
from opsportal.systems.models import PostgresDatabase

logger = logging.getLogger(__name__)

# Defaults of BACKUP_HEARTBEAT_SECONDS and BACKUP_HEARTBEAT_STALE_SECONDS: a running
# backup whose heartbeat is older than the stale window lost its worker (six missed beats:
# a slow dump still beats, a killed worker is noticed within about half a minute).
HEARTBEAT_SECONDS = 5
HEARTBEAT_STALE = dt.timedelta(seconds=30)
# Default of CONFIG_BACKUP_DEBOUNCE_SECONDS: configuration changes closer together than
# this are one burst, committed once when the burst is over.
CONFIG_DEBOUNCE = dt.timedelta(seconds=30)
# Queued rows older than this were probably never dispatched (broker down).
UNDISPATCHED_AFTER = dt.timedelta(seconds=60)
# A scheduled run not requested this long after it was due counts as missed.
MISSED_GRACE = dt.timedelta(minutes=30)
OPERATION_TIME_LIMIT = dt.timedelta(hours=3)
DEFAULT_TIME_LIMIT_SECONDS = 3 * 3600


def heartbeat_seconds() -> float:
    return float(getattr(settings, "BACKUP_HEARTBEAT_SECONDS", HEARTBEAT_SECONDS))


def heartbeat_stale() -> dt.timedelta:
    seconds = getattr(settings, "BACKUP_HEARTBEAT_STALE_SECONDS", None)
    return dt.timedelta(seconds=seconds) if seconds is not None else HEARTBEAT_STALE


def this_worker() -> str:
    """Names the process running a backup, so a lost run says which worker was lost."""
    return f"{socket.gethostname()} (pid {os.getpid()})"


class BackupBusy(Exception):
    """Another backup of the same database is running; try again later."""


# --- plans --------------------------------------------------------------------------------


def schedule_crontab(expression: str) -> dict[str, str]:
    """The plan's cron expression as django-celery-beat crontab fields (validated)."""
    parts = expression.split()
    if len(parts) != 5:
        raise ValidationError(
            "A schedule has five fields: minute hour day-of-month month day-of-week "
            f"(e.g. '0 2 * * *'); got {expression!r}."
        )
    minute, hour, day_of_month, month_of_year, day_of_week = parts
    fields = {
        "minute": minute,
        "hour": hour,
        "day_of_month": day_of_month,
        "month_of_year": month_of_year,
        "day_of_week": day_of_week,
    }
    try:
        crontab(**fields)
    except ValueError as exc:
        raise ValidationError(f"The schedule {expression!r} is not valid: {exc}") from exc
    return fields


def backup_plan_save(*, plan: BackupPlan) -> BackupPlan:
    """Save the plan and make its django-celery-beat entry follow it (audited by the
    model's change history)."""
    fields = schedule_crontab(plan.schedule)
    if plan.method == BackupMethod.CONTAINER and not plan.database.runs_in_container:
        raise ValidationError(
            f"{plan.database} has no Docker engine and container, so it cannot be dumped "
            "inside its container."
        )
    with transaction.atomic():
        plan.save()
        schedule, _ = CrontabSchedule.objects.get_or_create(timezone="UTC", **fields)
        task = plan.periodic_task or PeriodicTask.objects.filter(name=_task_name(plan)).first()
        if task is None:
            task = PeriodicTask(name=_task_name(plan), task="backups.run_scheduled")
        task.crontab = schedule
        task.interval = None
        task.args = f"[{plan.pk}]"
        task.enabled = plan.enabled
        task.description = f"Scheduled backup of {plan.database} (edit the backup plan)."
        task.save()
        if plan.periodic_task_id != task.pk:
            plan.periodic_task = task
            BackupPlan.objects.filter(pk=plan.pk).update(periodic_task=task)
    return plan


def _task_name(plan: BackupPlan) -> str:
    return f"Back up {plan.database.name}"


def backup_plan_ensure(*, database: PostgresDatabase) -> BackupPlan:
    """The database's plan, created with the runbook's defaults if it has none: dumped the
    way it was registered (docker exec inside its container when it runs in one, as the
    runbook's own commands do; pg_dump over the network otherwise)."""
    plan = BackupPlan.objects.filter(database=database).first()
    if plan is None:
        method = BackupMethod.CONTAINER if database.runs_in_container else BackupMethod.NETWORK
        plan = backup_plan_save(plan=BackupPlan(database=database, method=method))
    return plan


def backup_plan_on_registration(*, system: object, **kwargs: object) -> None:
    """Receiver of systems' `system_registered`: a newly registered database gets its
    default plan. After the registration commits, so that a configuration import, which
    brings the exported plans with it, creates a default only where the export had none."""
    if not isinstance(system, PostgresDatabase):
        return
    database_id = system.pk

    def ensure() -> None:
        database = PostgresDatabase.objects.select_related("docker_engine").filter(pk=database_id)
        if database.exists():
            backup_plan_ensure(database=database.get())

    transaction.on_commit(ensure, robust=True)


def plan_next_due(plan: BackupPlan, after: dt.datetime) -> dt.datetime:
    schedule = crontab(**schedule_crontab(plan.schedule))
    start, delta, _ = schedule.remaining_delta(after.astimezone(dt.UTC))
    return start + delta


# --- requesting and running backups -----------------------------------------------------


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
    backup = _backup_create(database=database, actor=actor, reason=reason, trigger=trigger)
    audit_record(
        action=AuditAction.OPERATION,
        obj=backup,
        actor=actor,
        outcome=AuditOutcome.REQUESTED,
        message=f"Backup of {database} requested ({trigger})" + (f": {reason}" if reason else ""),
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


def restore_run_now(*, restore: Restore) -> Restore:
    """Run a recorded restore in this process (`manage.py restore_backup`)."""
    return restore_run(restore_id=restore.pk) or restore


def _backup_create(
    *,
    database: PostgresDatabase,
    actor: object | None,
    reason: str,
    trigger: str,
    retry_of: Backup | None = None,
) -> Backup:
    plan = BackupPlan.objects.filter(database=database).first()
    return Backup.objects.create(
        database=database,
        plan=plan,
        trigger=trigger,
        retry_of=retry_of,
        reason=reason[:500],
        requested_by=actor if getattr(actor, "pk", None) else None,
        method=plan.method if plan else BackupMethod.NETWORK,
        format=plan.format if plan else BackupFormat.CUSTOM,
        compression=plan.compression if plan else 6,
        storage_location=plan.storage_location if plan else "",
    )


def _dispatch_backup(backup: Backup, **options: object) -> None:
    from backups.tasks import run_backup

    limit = backup.plan.time_limit_seconds if backup.plan else DEFAULT_TIME_LIMIT_SECONDS
    enqueue_after_commit(
        run_backup, backup.pk, time_limit=limit + 120, soft_time_limit=limit + 60, **options
    )


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
            claimed = Backup.objects.filter(pk=backup_id, status=BackupStatus.QUEUED).update(
                status=BackupStatus.RUNNING,
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
                    Backup.objects.filter(pk=self.backup_id, status=BackupStatus.RUNNING).update(
                        heartbeat_at=timezone.now()
                    )
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
    Backup.objects.filter(pk=backup.pk).update(
        status=backup.status,
        finished_at=backup.finished_at,
        duration_seconds=backup.duration_seconds,
        size_bytes=backup.size_bytes,
        sha256=backup.sha256,
        server_version=backup.server_version,
        table_row_counts=backup.table_row_counts,
        message=backup.message,
    )
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


# --- verification -------------------------------------------------------------------------


def _gunzip(chunks: Iterable[bytes]) -> Iterator[bytes]:
    decompressor = zlib.decompressobj(wbits=31)
    for chunk in chunks:
        data = decompressor.decompress(chunk)
        if data:
            yield data
    tail = decompressor.flush()
    if tail:
        yield tail


def _archive_chunks(backup: Backup, chunks: Iterable[bytes]) -> Iterable[bytes]:
    """The bytes pg_restore/psql read: plain dumps written compressed are gzip."""
    if backup.format == BackupFormat.PLAIN and backup.compression:
        return _gunzip(chunks)
    return chunks


class _Hashing:
    def __init__(self, chunks: Iterable[bytes]) -> None:
        self.chunks = iter(chunks)
        self.hasher = hashlib.sha256()
        self.size = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.chunks:
            self.hasher.update(chunk)
            self.size += len(chunk)
            yield chunk

    def drain(self) -> None:
        for _ in self:
            pass


def _check_plain(chunks: Iterable[bytes]) -> str:
    head, tail = b"", b""
    for chunk in chunks:
        if len(head) < 4096:
            head += chunk[: 4096 - len(head)]
        tail = (tail + chunk)[-4096:]
    if b"PostgreSQL database dump" not in head:
        raise pg_tools.ToolFailed("It does not start like a pg_dump SQL script.")
    if b"PostgreSQL database dump complete" not in tail:
        raise pg_tools.ToolFailed("It is cut short: pg_dump's closing line is missing.")
    return "SQL script complete (header and closing line present)"


def backup_verify(*, backup: Backup, actor: object | None = None) -> Backup:
    """Re-read the file: its SHA-256 must match what was recorded, and the archive must be
    readable end to end (pg_restore reads every block; a plain script must be complete)."""
    storage = storage_for(backup.storage_location)
    problems: list[str] = []
    detail = ""
    try:
        hashing = _Hashing(storage.read_chunks(backup.file_name))
        try:
            if backup.format == BackupFormat.CUSTOM:
                pg_tools.archive_read_through(hashing)
            else:
                detail = _check_plain(_archive_chunks(backup, hashing))
        except (AdapterError, zlib.error, EOFError) as exc:
            problems.append(f"It is not readable: {exc}")
        hashing.drain()
        if hashing.hasher.hexdigest() != backup.sha256 or hashing.size != backup.size_bytes:
            # The checksum outranks the readability message: the file was altered.
            problems.insert(
                0,
                f"Checksum mismatch: the file changed after it was written (recorded sha256 "
                f"{backup.sha256}, {backup.size_bytes} bytes; found "
                f"{hashing.hasher.hexdigest()}, {hashing.size} bytes).",
            )
        if not problems and backup.format == BackupFormat.CUSTOM:
            listing = pg_tools.archive_list(storage.read_chunks(backup.file_name))
            entries = sum(1 for line in listing.splitlines() if line and not line.startswith(";"))
            detail = f"pg_restore --list: {entries} entries; every data block read"
    except (StorageError, AdapterError) as exc:
        problems.append(str(exc))
    backup.verification = Verification.FAILED if problems else Verification.VERIFIED
    backup.verified_at = timezone.now()
    backup.verification_message = " ".join(problems) if problems else f"Checksum matches; {detail}."
    Backup.objects.filter(pk=backup.pk).update(
        verification=backup.verification,
        verified_at=backup.verified_at,
        verification_message=backup.verification_message,
    )
    audit_record(
        action=AuditAction.OPERATION,
        obj=backup,
        actor=actor,
        outcome=AuditOutcome.FAILURE if problems else AuditOutcome.SUCCESS,
        message=f"Verification: {backup.verification_message}",
    )
    if problems:
        _alert_database_admins(
            plan=backup.plan,
            about=backup,
            subject=f"Backup #{backup.pk} of {backup.database} failed verification",
            body=backup.verification_message,
            open_incident=False,
        )
    return backup


# --- restore ------------------------------------------------------------------------------


def _require(actor: object | None, permission: str) -> None:
    if actor is not None and not actor.has_perm(permission):
        raise PermissionDenied(f"You need the {permission!r} permission for this.")


def restore_request(
    *,
    backup: Backup,
    target: PostgresDatabase,
    actor: object | None,
    reason: str,
    confirmation: str,
    disconnect_sessions: bool = False,
    dispatch: bool = True,
) -> Restore:
    """Record a restore of `backup` into `target` and run it on a worker after commit
    (`dispatch=False`: the caller runs it, as `manage.py restore_backup` does).

    The operator confirms by typing the target's registered system name (unique, unlike
    the database name, which is often the same on production and staging); a reason is
    required.
    """
    _require(actor, "backups.restore_backup")
    if not backup.is_restorable:
        raise ValidationError(
            f"Backup #{backup.pk} cannot be restored: "
            + ("its file was deleted by retention." if backup.pruned_at else "it did not succeed.")
        )
    if confirmation.strip() != target.name:
        raise ValidationError(
            f"Type the name of the system you restore into, {target.name!r} (its registered "
            "name, not its database name), exactly to confirm."
        )
    if not reason.strip():
        raise ValidationError("Give a reason for the restore.")
    restore = Restore.objects.create(
        backup=backup,
        target=target,
        reason=reason.strip()[:500],
        requested_by=actor if getattr(actor, "pk", None) else None,
        disconnect_sessions=disconnect_sessions,
    )
    audit_record(
        action=AuditAction.OPERATION,
        obj=restore,
        actor=actor,
        outcome=AuditOutcome.REQUESTED,
        message=f"Restore of backup #{backup.pk} into {target} requested: {reason.strip()}",
    )
    if dispatch:
        from backups.tasks import run_restore

        enqueue_after_commit(run_restore, restore.pk)
    return restore


def _claim(model, pk: int):
    return model.objects.filter(pk=pk, status=OperationStatus.QUEUED).update(
        status=OperationStatus.RUNNING, started_at=timezone.now()
    )


def restore_run(*, restore_id: int) -> Restore | None:
    """Checksum, sessions, safety backup, then the restore in one transaction."""
    if not _claim(Restore, restore_id):
        return None
    restore = Restore.objects.select_related("backup", "backup__database", "target").get(
        pk=restore_id
    )
    started = time.monotonic()
    backup, target = restore.backup, restore.target
    status, message = OperationStatus.FAILED, ""
    try:
        message = _restore_steps(restore)
        status = OperationStatus.SUCCEEDED
    except (AdapterError, StorageError, ValidationError) as exc:
        text = exc.messages[0] if isinstance(exc, ValidationError) else str(exc)
        tool_messages = getattr(exc, "messages", "")
        message = text + (
            f"\n\nThe tool said:\n{tool_messages}"
            if isinstance(tool_messages, str) and tool_messages
            else ""
        )
    except Exception as exc:
        logger.exception("Restore #%s failed unexpectedly", restore.pk)
        message = f"Unexpected error: {type(exc).__name__}: {exc}"
    restore.status, restore.message = status, message
    restore.finished_at = timezone.now()
    restore.duration_seconds = round(time.monotonic() - started, 3)
    Restore.objects.filter(pk=restore.pk).update(
        status=restore.status,
        message=restore.message,
        finished_at=restore.finished_at,
        duration_seconds=restore.duration_seconds,
        safety_backup=restore.safety_backup,
    )
    audit_record(
        action=AuditAction.OPERATION,
        obj=restore,
        actor=restore.requested_by,
        outcome=AuditOutcome.SUCCESS
        if status == OperationStatus.SUCCEEDED
        else AuditOutcome.FAILURE,
        message=f"Restore of backup #{backup.pk} into {target}: {message.splitlines()[0]}",
    )
    return restore


def _file_matches_checksum(backup: Backup) -> None:
    hashing = _Hashing(storage_for(backup.storage_location).read_chunks(backup.file_name))
    hashing.drain()
    if hashing.hasher.hexdigest() != backup.sha256:
        raise ValidationError(
            f"Checksum mismatch: backup #{backup.pk}'s file changed after it was written "
            f"(recorded sha256 {backup.sha256}, found {hashing.hasher.hexdigest()}); "
            "nothing was restored."
        )


def _restore_steps(restore: Restore) -> str:
    backup, target = restore.backup, restore.target
    _file_matches_checksum(backup)
    sessions = postgres.other_client_sessions(target)
    if sessions and not restore.disconnect_sessions:
        who = ", ".join(sorted({f"{user}/{app or '?'}" for _, user, app in sessions}))
        raise ValidationError(
            f"{len(sessions)} other session(s) are connected to {target.dbname} ({who}); "
            "stop them, or request the restore again with 'disconnect sessions'. Nothing "
            "was changed."
        )
    safety = _backup_create(
        database=target,
        actor=restore.requested_by,
        reason=f"Safety backup before restore #{restore.pk}",
        trigger=BackupTrigger.SAFETY,
    )
    restore.safety_backup = safety
    Restore.objects.filter(pk=restore.pk).update(safety_backup=safety)
    try:
        # The same run as every backup (dump, then verify), so the restore overwrites the
        # target only when its safety backup is known to be readable.
        claimed = backup_run(backup_id=safety.pk)
    except BackupBusy as exc:
        Backup.objects.filter(pk=safety.pk).update(
            status=BackupStatus.FAILED, message=str(exc), finished_at=timezone.now()
        )
        raise ValidationError(
            f"A backup of {target} is running, so the safety backup could not be taken; "
            "the restore did not start. Try again when it finishes."
        ) from exc
    if claimed.status != BackupStatus.SUCCEEDED:
        raise ValidationError(
            f"The safety backup of {target} failed, so the restore did not start: "
            f"{claimed.message.splitlines()[0]}"
        )
    if claimed.verification != Verification.VERIFIED:
        raise ValidationError(
            f"The safety backup of {target} failed verification, so the restore did not "
            f"start: {claimed.verification_message}"
        )
    terminated = (
        postgres.terminate_other_client_sessions(target) if restore.disconnect_sessions else 0
    )
    storage = storage_for(backup.storage_location)
    run = pg_tools.restore(
        target,
        chunks=_archive_chunks(backup, storage.read_chunks(backup.file_name)),
        format=backup.format,
        time_limit_seconds=OPERATION_TIME_LIMIT.total_seconds(),
    )
    return (
        f"Restored backup #{backup.pk} into {target.dbname} in {run.duration_seconds:.1f} s "
        f"(safety backup #{claimed.pk} taken first"
        + (f"; {terminated} session(s) disconnected" if terminated else "")
        + ")."
        + (f"\n{run.messages}" if run.messages else "")
    )


# --- restore drills -----------------------------------------------------------------------


def drill_request(*, backup: Backup, actor: object | None = None) -> RestoreDrill:
    _require(actor, "backups.drill_backup")
    if not backup.is_restorable:
        raise ValidationError(f"Backup #{backup.pk} has no file to drill with.")
    drill = RestoreDrill.objects.create(
        backup=backup, requested_by=actor if getattr(actor, "pk", None) else None
    )
    audit_record(
        action=AuditAction.OPERATION,
        obj=drill,
        actor=actor,
        outcome=AuditOutcome.REQUESTED,
        message=f"Restore drill of backup #{backup.pk} requested",
    )
    from backups.tasks import run_drill

    enqueue_after_commit(run_drill, drill.pk)
    return drill


def drills_request_newest() -> list[RestoreDrill]:
    """The weekly drill: the newest good backup of every enabled plan's database."""
    drills = []
    for plan in BackupPlan.objects.filter(enabled=True).select_related("database"):
        newest = (
            Backup.objects.filter(
                database=plan.database, status=BackupStatus.SUCCEEDED, pruned_at=None
            )
            .order_by("-finished_at")
            .first()
        )
        if newest is not None:
            drills.append(drill_request(backup=newest))
    return drills


def drill_run(*, drill_id: int) -> RestoreDrill | None:
    """Restore into a scratch database on the source's server, compare row counts with the
    ones recorded in the backup's snapshot, drop the scratch database."""
    if not _claim(RestoreDrill, drill_id):
        return None
    drill = RestoreDrill.objects.select_related("backup", "backup__database").get(pk=drill_id)
    backup, database = drill.backup, drill.backup.database
    started = time.monotonic()
    scratch = f"opsportal_drill_{backup.pk}_{secrets.token_hex(4)}"
    drill.scratch_database = scratch
    status, message, mismatches, compared = OperationStatus.FAILED, "", {}, 0
    created = False
    try:
        _file_matches_checksum(backup)
        postgres.scratch_database_create(database, name=scratch)
        created = True
        storage = storage_for(backup.storage_location)
        pg_tools.restore(
            database,
            dbname=scratch,
            chunks=_archive_chunks(backup, storage.read_chunks(backup.file_name)),
            format=backup.format,
            time_limit_seconds=OPERATION_TIME_LIMIT.total_seconds(),
        )
        with postgres.connect(database, dbname=scratch, statement_timeout_ms=0) as conn:
            restored = postgres.table_row_counts(conn)
        recorded = backup.table_row_counts
        compared = len(recorded)
        for table in sorted(set(recorded) | set(restored)):
            if recorded.get(table) != restored.get(table):
                mismatches[table] = {
                    "recorded": recorded.get(table),
                    "restored": restored.get(table),
                }
        if mismatches:
            message = f"{len(mismatches)} of {compared} tables differ in row count after restore."
        else:
            status = OperationStatus.SUCCEEDED
            message = f"Restored into {scratch}; row counts of all {compared} tables match."
    except (AdapterError, StorageError, ValidationError) as exc:
        text = exc.messages[0] if isinstance(exc, ValidationError) else str(exc)
        tool_messages = getattr(exc, "messages", "")
        message = f"Restore into the scratch database failed: {text}" + (
            f"\n\n{tool_messages}" if isinstance(tool_messages, str) and tool_messages else ""
        )
    except Exception as exc:
        logger.exception("Drill #%s failed unexpectedly", drill.pk)
        message = f"Unexpected error: {type(exc).__name__}: {exc}"
    finally:
        if created:
            try:
                postgres.scratch_database_drop(database, name=scratch)
            except AdapterError as exc:
                message += f"\nThe scratch database {scratch} could not be dropped: {exc}"
    drill.status, drill.message = status, message
    drill.mismatches, drill.tables_compared = mismatches, compared
    drill.finished_at = timezone.now()
    drill.duration_seconds = round(time.monotonic() - started, 3)
    drill.save(
        update_fields=[
            "status",
            "message",
            "mismatches",
            "tables_compared",
            "finished_at",
            "duration_seconds",
            "scratch_database",
        ]
    )
    passed = status == OperationStatus.SUCCEEDED
    backup.drill_result = DrillResult.PASSED if passed else DrillResult.FAILED
    Backup.objects.filter(pk=backup.pk).update(drill_result=backup.drill_result)
    audit_record(
        action=AuditAction.OPERATION,
        obj=drill,
        actor=drill.requested_by,
        outcome=AuditOutcome.SUCCESS if passed else AuditOutcome.FAILURE,
        message=f"Restore drill of backup #{backup.pk} in {drill.duration_seconds:.1f} s: "
        + message.splitlines()[0],
    )
    if not passed:
        _alert_database_admins(
            plan=backup.plan,
            about=backup,
            subject=f"Backup #{backup.pk} of {database} failed its restore drill",
            body=message,
            open_incident=False,
        )
    return drill


# --- retention ----------------------------------------------------------------------------


def retention_keep(backups: list[Backup], *, daily: int, weekly: int, monthly: int) -> set[int]:
    """Which backups the plan keeps: the newest of each of the last `daily` days, `weekly`
    ISO weeks and `monthly` months that have a backup, plus the newest verified one."""
    ordered = sorted(backups, key=lambda b: b.finished_at, reverse=True)
    keep: set[int] = set()
    for count, bucket in (
        (daily, lambda b: b.finished_at.date()),
        (weekly, lambda b: b.finished_at.isocalendar()[:2]),
        (monthly, lambda b: (b.finished_at.year, b.finished_at.month)),
    ):
        seen: list = []
        for backup in ordered:
            key = bucket(backup)
            if key in seen:
                continue
            if len(seen) >= count:
                break
            seen.append(key)
            keep.add(backup.pk)
    newest_verified = next((b for b in ordered if b.verification == Verification.VERIFIED), None)
    if newest_verified is not None:
        keep.add(newest_verified.pk)
    return keep


def backups_beyond_retention(*, plan: BackupPlan) -> list[Backup]:
    """The backups whose files the plan no longer keeps (what retention would delete now);
    the admin shows them on its confirmation page before anything is deleted."""
    candidates = list(
        Backup.objects.filter(
            database=plan.database, status=BackupStatus.SUCCEEDED, pruned_at=None
        ).exclude(finished_at=None)
    )
    keep = retention_keep(
        candidates, daily=plan.keep_daily, weekly=plan.keep_weekly, monthly=plan.keep_monthly
    )
    return [backup for backup in candidates if backup.pk not in keep]


def backup_plan_apply_retention(
    *, plan: BackupPlan, actor: object | None = None, reason: str = ""
) -> list[Backup]:
    """Delete the files the plan no longer keeps; each deletion is audited (with the
    operator's reason when a person asked for it rather than the schedule)."""
    _require(actor, "backups.change_backupplan")
    pruned = []
    for backup in backups_beyond_retention(plan=plan):
        try:
            storage_for(backup.storage_location).delete(backup.file_name)
        except (StorageError, OSError) as exc:
            logger.warning("Retention could not delete backup #%s: %s", backup.pk, exc)
            continue
        backup.pruned_at = timezone.now()
        Backup.objects.filter(pk=backup.pk).update(pruned_at=backup.pruned_at)
        audit_record(
            action=AuditAction.DELETE,
            obj=backup,
            actor=actor,
            message=f"Retention deleted {backup.file_name} (keeping {plan.keep_daily} daily, "
            f"{plan.keep_weekly} weekly, {plan.keep_monthly} monthly)"
            + (f": {reason.strip()}" if reason.strip() else ""),
        )
        pruned.append(backup)
    return pruned


# --- schedules, sweeping and alerts -------------------------------------------------------


def backup_plan_run_scheduled(*, plan_id: int) -> Backup | None:
    plan = BackupPlan.objects.select_related("database").filter(pk=plan_id, enabled=True).first()
    if plan is None:
        return None
    return backup_request(
        database=plan.database, trigger=BackupTrigger.SCHEDULED, reason="Scheduled backup"
    )


def _alert_database_admins(
    *,
    plan: BackupPlan | None,
    about: object,
    subject: str,
    body: str,
    open_incident: bool = True,
) -> None:
    """Page the database admins, through an incident when the plan asks for one (its
    routing pages the DBAs and the on-call engineer once), otherwise directly."""
    if open_incident and plan is not None and plan.open_incident_on_failure:
        try:
            from incidents.services import incident_open

            incident_open(
                title=subject,
                severity="sev2",
                category="database",
                symptoms=body,
                affected_systems=[plan.database],
                source="schedule",
            )
            return
        except Exception:
            # The DBAs must hear of it even if the incident could not be opened.
            logger.exception("Could not open an incident for %r", subject)
    notify(responsibility=Responsibility.DATABASE, subject=subject, body=body, about=about)


def backups_sweep(*, now: dt.datetime | None = None) -> dict[str, int]:
    """Re-dispatch work the broker lost, fail runs whose worker died, report missed
    scheduled backups (CONVENTIONS "Background operations")."""
    from backups.tasks import run_drill, run_restore

    now = now or timezone.now()
    counts = {"redispatched": 0, "failed": 0, "missed": 0}
    for backup in Backup.objects.filter(
        status=BackupStatus.QUEUED, requested_at__lt=now - UNDISPATCHED_AFTER
    ).select_related("plan"):
        _dispatch_backup(backup)
        counts["redispatched"] += 1
    for model, task in ((Restore, run_restore), (RestoreDrill, run_drill)):
        for pk in model.objects.filter(
            status=OperationStatus.QUEUED, requested_at__lt=now - UNDISPATCHED_AFTER
        ).values_list("pk", flat=True):
            enqueue_after_commit(task, pk)
            counts["redispatched"] += 1
        counts["failed"] += model.objects.filter(
            status=OperationStatus.RUNNING, started_at__lt=now - OPERATION_TIME_LIMIT
        ).update(
            status=OperationStatus.FAILED,
            finished_at=now,
            message="The worker stopped before finishing (past the time limit).",
        )
    counts["failed"] += backups_fail_abandoned(now=now)
    # Configuration changes whose commit message the broker lost.
    if ConfigurationChange.objects.filter(
        committed_at=None, commit_after__lt=now - UNDISPATCHED_AFTER
    ).exists():
        _dispatch_configuration_commit(countdown=0)
        counts["redispatched"] += 1
    for plan in BackupPlan.objects.filter(enabled=True).select_related("database"):
        counts["missed"] += _report_missed(plan, now)
    return counts


def backups_fail_abandoned(*, now: dt.datetime | None = None) -> int:
    """Fail every running backup whose worker stopped beating (beat runs this every few
    seconds, so a killed worker is noticed within BACKUP_HEARTBEAT_STALE_SECONDS)."""
    now = now or timezone.now()
    failed = 0
    for backup in Backup.objects.filter(
        status=BackupStatus.RUNNING, heartbeat_at__lt=now - heartbeat_stale()
    ).select_related("database", "database__docker_engine", "plan"):
        failed += backup_fail_abandoned(backup=backup, now=now)
    return failed


def backup_fail_abandoned(*, backup: Backup, now: dt.datetime) -> int:
    """The worker died mid-backup: fail the row, remove its partial file, tell the database
    admins and, for a scheduled backup, run it again once."""
    message = (
        f"The worker running this backup stopped: {backup.worker or 'an unrecorded worker'} "
        f"sent no heartbeat since {backup.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC (the process "
        "was lost: killed, out of memory or its host went down); its partial file was "
        "removed."
    )
    with transaction.atomic():
        updated = Backup.objects.filter(pk=backup.pk, status=BackupStatus.RUNNING).update(
            status=BackupStatus.FAILED, finished_at=now, message=message
        )
        if not updated:
            return 0  # finished meanwhile, or another sweeper got it first
        backup.status, backup.message = BackupStatus.FAILED, message
        audit_record(
            action=AuditAction.OPERATION, obj=backup, outcome=AuditOutcome.FAILURE, message=message
        )
        retry = _backup_retry(backup)
    if backup.file_name:
        try:
            storage_for(backup.storage_location).discard_partial(backup.file_name)
        except (StorageError, OSError):
            logger.warning("Could not remove the partial file of backup #%s", backup.pk)
    scheduled = backup.trigger == BackupTrigger.SCHEDULED
    if retry is not None:
        outcome = f"It is being run again, once, as backup #{retry.pk}."
    elif scheduled:
        outcome = "It was already a re-run, so it is not run again: start one by hand."
    else:
        outcome = f"It was a {backup.get_trigger_display().lower()} backup: start it again by hand."
    _alert_database_admins(
        plan=backup.plan,
        about=backup,
        subject=f"Backup #{backup.pk} of {backup.database} failed: its worker was lost",
        body=f"{message}\n\n{outcome}",
        # The re-run may well succeed; an incident is for a scheduled backup that will not.
        open_incident=scheduled and retry is None,
    )
    return 1


def _backup_retry(backup: Backup) -> Backup | None:
    """Re-run a scheduled backup whose worker was lost, once: a re-run is never re-run, and
    the one-to-one link refuses a second re-run of the same backup."""
    if backup.trigger != BackupTrigger.SCHEDULED or backup.retry_of_id is not None:
        return None
    try:
        with transaction.atomic():
            retry = _backup_create(
                database=backup.database,
                actor=None,
                reason=f"Re-run of scheduled backup #{backup.pk}, whose worker was lost",
                trigger=BackupTrigger.SCHEDULED,
                retry_of=backup,
            )
    except IntegrityError:
        return None
    audit_record(
        action=AuditAction.OPERATION,
        obj=retry,
        outcome=AuditOutcome.REQUESTED,
        message=f"Backup of {backup.database} re-run automatically (once): scheduled backup "
        f"#{backup.pk} lost its worker",
    )
    _dispatch_backup(retry)
    return retry


def _report_missed(plan: BackupPlan, now: dt.datetime) -> int:
    last = (
        Backup.objects.filter(database=plan.database, trigger=BackupTrigger.SCHEDULED)
        .order_by("-requested_at")
        .values_list("requested_at", flat=True)
        .first()
    )
    due = plan_next_due(plan, last or plan.created_at)
    if now < due + MISSED_GRACE or plan.missed_reported_for == due:
        return 0
    BackupPlan.objects.filter(pk=plan.pk).update(missed_reported_for=due)
    plan.missed_reported_for = due
    message = (
        f"The scheduled backup of {plan.database} due at {due:%Y-%m-%d %H:%M} UTC did not "
        "start. Check that Celery beat and a worker are running."
    )
    audit_record(
        action=AuditAction.OPERATION, obj=plan, outcome=AuditOutcome.FAILURE, message=message
    )
    _alert_database_admins(
        plan=plan, about=plan, subject=f"Scheduled backup of {plan.database} missed", body=message
    )
    return 1


def backups_load_defaults() -> None:
    """Plans for registered databases, and the sweeper, drill and retention schedules."""
    from opsportal.schedules import periodic_task_ensure

    for database in PostgresDatabase.objects.filter(backup_plan__isnull=True):
        backup_plan_ensure(database=database)
    periodic_task_ensure(
        name="Sweep backups",
        task="backups.sweep",
        every_seconds=60,
        description="Re-dispatches lost backup work, fails runs whose worker died, reports "
        "missed scheduled backups.",
    )
    periodic_task_ensure(
        name="Fail backups whose worker died",
        task="backups.fail_abandoned",
        every_seconds=10,
        description="Fails running backups whose worker stopped beating, tells the database "
        "admins and re-runs a scheduled one once.",
    )
    periodic_task_ensure(
        name="Configuration backup",
        task="backups.configuration_backup",
        crontab={"minute": "15", "hour": "2"},
        description="Commits the portal's configuration to its Git repository (daily).",
    )
    periodic_task_ensure(
        name="Weekly restore drill",
        task="backups.drill_newest",
        crontab={"minute": "0", "hour": "4", "day_of_week": "0"},
        description="Restores the newest backup of every plan into a scratch database and "
        "compares row counts.",
    )


# --- configuration backups (the runbook's "Configuration Backups") ------------------------


def configuration_backup(
    *, actor: object | None = None, message: str = "", directory: Path | None = None
):
    """Export the configuration into the Git repository and commit it with an audit
    checkpoint (and push when a remote is configured). Unchanged configuration makes no
    commit."""
    from backups import audit_checkpoints, configuration, git_repository

    repo = Path(directory or settings.CONFIG_BACKUP_REPO)
    remote = getattr(settings, "CONFIG_BACKUP_REMOTE", "")
    name = actor.get_username() if getattr(actor, "pk", None) else "OpsPortal"
    email = getattr(actor, "email", "") or "opsportal@localhost"
    try:
        # The daily commit and a change's commit may run at once in two worker processes.
        with _repository_lock(repo):
            git_repository.ensure(repo, remote=remote)
            configuration.configuration_write(directory=repo)
            if git_repository.has_changes(repo):
                # Every configuration commit also anchors the audit chain's end outside the
                # database (see backups/audit_checkpoints.py).
                audit_checkpoints.checkpoint_file_write(repo=repo, checkpoint=checkpoint_make())
            result = git_repository.commit_all(
                repo,
                message=message or f"Configuration as of {timezone.now():%Y-%m-%d %H:%M} UTC",
                author=(name, email),
                remote=remote,
            )
    except (git_repository.GitFailed, OSError) as exc:
        audit_record(
            action=AuditAction.OPERATION,
            object_type="backups.configuration",
            object_repr=str(repo),
            actor=actor,
            outcome=AuditOutcome.FAILURE,
            message=f"Configuration backup failed: {exc}",
        )
        raise
    audit_record(
        action=AuditAction.OPERATION,
        object_type="backups.configuration",
        object_repr=str(repo),
        actor=actor,
        message=(
            f"Configuration committed as {result.commit[:12]}"
            if result.committed
            else "Configuration unchanged; nothing committed"
        )
        + (" and pushed" if result.pushed else ""),
    )
    return result


def audit_checkpoint_commit(*, checkpoint: Checkpoint):
    """Commit `checkpoint` to the configuration repository on its own (the hourly schedule)
    and push it when a remote is configured."""
    from backups import audit_checkpoints, git_repository

    repo = Path(settings.CONFIG_BACKUP_REPO)
    remote = getattr(settings, "CONFIG_BACKUP_REMOTE", "")
    with _repository_lock(repo):
        git_repository.ensure(repo, remote=remote)
        audit_checkpoints.checkpoint_file_write(repo=repo, checkpoint=checkpoint)
        return git_repository.commit_all(
            repo,
            message=f"Audit checkpoint: {checkpoint.count} records up to #{checkpoint.last_id}",
            author=("OpsPortal", "opsportal@localhost"),
            remote=remote,
        )


def configuration_restore(*, directory: Path, actor: object | None = None):
    """Apply an exported configuration (e.g. a checkout of the repository) to this portal."""
    from backups import configuration

    result = configuration.configuration_apply(directory=Path(directory))
    audit_record(
        action=AuditAction.OPERATION,
        object_type="backups.configuration",
        object_repr=str(directory),
        actor=actor,
        message="Configuration imported: "
        + ", ".join(f"{label} +{n}" for label, n in result.created.items() if n),
    )
    return result


@contextlib.contextmanager
def _repository_lock(repo: Path) -> Iterator[None]:
    repo.parent.mkdir(parents=True, exist_ok=True)
    with open(repo.parent / f".{repo.name}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _configuration_debounce() -> dt.timedelta:
    seconds = getattr(settings, "CONFIG_BACKUP_DEBOUNCE_SECONDS", None)
    return dt.timedelta(seconds=seconds) if seconds is not None else CONFIG_DEBOUNCE


def _dispatch_configuration_commit(*, countdown: float) -> None:
    from backups.tasks import commit_configuration_changes

    if countdown > 0 and commit_configuration_changes.app.conf.task_always_eager:
        # Tasks run inline (CELERY_TASK_ALWAYS_EAGER) cannot wait for the burst to end, and
        # re-sending at once would recurse: leave the burst to the sweeper.
        return
    enqueue_after_commit(commit_configuration_changes, countdown=max(countdown, 0))


def configuration_change_record(*, description: str) -> ConfigurationChange:
    """Note a change to exported configuration (called from the registered models' save and
    delete signals, inside the change's transaction); it is committed to Git when its
    burst of changes is over."""
    ctx = context.current()
    actor = ctx.actor if getattr(ctx.actor, "pk", None) else None
    now = timezone.now()
    window = _configuration_debounce()
    burst_started = not ConfigurationChange.objects.filter(committed_at=None).exists()
    change = ConfigurationChange.objects.create(
        changed_at=now,
        commit_after=now + window,
        actor=actor,
        actor_name=actor.get_username() if actor else "",
        description=description[:300],
    )
    if burst_started:
        # Later changes of the burst find this one pending and send nothing; the task
        # waits for the burst's end itself.
        _dispatch_configuration_commit(countdown=window.total_seconds())
    return change


def configuration_commit_changes(*, now: dt.datetime | None = None):
    """Commit the pending configuration changes once their burst is over: one commit for
    the burst, authored by whoever made its last change. A burst that changed no exported
    bytes makes no commit. Returns the CommitResult, or None while there is nothing to do
    yet."""
    now = now or timezone.now()
    pending = list(
        ConfigurationChange.objects.filter(committed_at=None, changed_at__lte=now)
        .select_related("actor")
        .order_by("changed_at", "pk")
    )
    if not pending:
        return None
    burst_ends = max(change.commit_after for change in pending)
    if burst_ends > now:
        _dispatch_configuration_commit(countdown=(burst_ends - now).total_seconds() + 0.2)
        return None
    last = pending[-1]
    people = sorted({change.actor_name or "the system" for change in pending})
    described = list(dict.fromkeys(change.description for change in pending))
    lines = [f"- {text}" for text in described[:50]]
    if len(described) > 50:
        lines.append(f"- ... and {len(described) - 50} more")
    message = (
        f"Configuration changed by {', '.join(people)} ({len(pending)} change(s))\n\n"
        + "\n".join(lines)
    )
    # A failure (git, disk) raises and leaves the rows pending; the sweeper retries them.
    result = configuration_backup(actor=last.actor, message=message)
    ConfigurationChange.objects.filter(
        pk__in=[change.pk for change in pending], committed_at=None
    ).update(committed_at=timezone.now(), commit=result.commit if result.committed else "")
    newer = ConfigurationChange.objects.filter(committed_at=None).order_by("-commit_after").first()
    if newer is not None:
        # Changes made while this commit ran: their own burst, their own commit.
        _dispatch_configuration_commit(
            countdown=(newer.commit_after - timezone.now()).total_seconds() + 0.2
        )
    return result
