"""The sweeper (CONVENTIONS "Background operations"): re-dispatch work the broker lost, fail
runs whose worker died (re-running a scheduled backup once), report missed scheduled
backups."""

from __future__ import annotations

import datetime as dt

from django.db import IntegrityError, transaction
from django.utils import timezone

from backups.models import (
    Backup,
    BackupPlan,
    BackupStatus,
    BackupTrigger,
    ConfigurationChange,
    Restore,
    RestoreDrill,
    RestoreStatus,
)
from backups.services._common import (
    OPERATION_TIME_LIMIT,
    _backup_create,
    _dispatch_backup,
    _dispatch_configuration_commit,
    logger,
)
from backups.services.alerts import _alert_database_admins
from backups.services.plans import plan_next_due
from backups.services.runs import heartbeat_stale
from backups.storage import StorageError, storage_for
from opsportal.audit.models import AuditAction, AuditOutcome
from opsportal.audit.services import audit_record
from opsportal.jobs import JobSpec, job_fail_dead, job_finish, job_redispatch_lost, job_sweep
from opsportal.queueing import enqueue_after_commit

# Queued rows older than this were probably never dispatched (broker down).
UNDISPATCHED_AFTER = dt.timedelta(seconds=60)
# A scheduled run not requested this long after it was due counts as missed.
MISSED_GRACE = dt.timedelta(minutes=30)


def _dispatch_restore(restore: Restore) -> None:
    from backups.tasks import run_restore

    enqueue_after_commit(run_restore, restore.pk)


def _dispatch_drill(drill: RestoreDrill) -> None:
    from backups.tasks import run_drill

    enqueue_after_commit(run_drill, drill.pk)


def _fail_past_time_limit(row: Restore | RestoreDrill, now: dt.datetime) -> bool:
    return job_finish(
        type(row),
        row.pk,
        from_status=RestoreStatus.RUNNING,
        to_status=RestoreStatus.FAILED,
        now=now,
        message="The worker stopped before finishing (past the time limit).",
    )


def _backup_fail_abandoned(backup: Backup, now: dt.datetime) -> bool:
    return bool(backup_fail_abandoned(backup=backup, now=now))


# How the shared sweeper (opsportal.jobs) treats the app's jobs. A backup beats while it
# dumps, so a dead worker shows as a stale heartbeat; restores and drills have no
# heartbeat and are failed past OPERATION_TIME_LIMIT.
BACKUP_JOB = JobSpec(
    model=Backup,
    queued=BackupStatus.QUEUED,
    running=BackupStatus.RUNNING,
    dispatch=_dispatch_backup,
    fail=_backup_fail_abandoned,
    lost_after=UNDISPATCHED_AFTER,
    heartbeat_field="heartbeat_at",
    heartbeat_stale=heartbeat_stale,
    select_related=("database", "database__docker_engine", "plan"),
)
RESTORE_JOB = JobSpec(
    model=Restore,
    queued=RestoreStatus.QUEUED,
    running=RestoreStatus.RUNNING,
    dispatch=_dispatch_restore,
    fail=_fail_past_time_limit,
    lost_after=UNDISPATCHED_AFTER,
    time_limit=OPERATION_TIME_LIMIT,
)
DRILL_JOB = JobSpec(
    model=RestoreDrill,
    queued=RestoreStatus.QUEUED,
    running=RestoreStatus.RUNNING,
    dispatch=_dispatch_drill,
    fail=_fail_past_time_limit,
    lost_after=UNDISPATCHED_AFTER,
    time_limit=OPERATION_TIME_LIMIT,
)


def backups_sweep(*, now: dt.datetime | None = None) -> dict[str, int]:
    """Re-dispatch work the broker lost, fail runs whose worker died, report missed
    scheduled backups (CONVENTIONS "Background operations")."""
    now = now or timezone.now()
    counts = {"redispatched": 0, "failed": 0, "missed": 0}
    counts["redispatched"] += job_redispatch_lost(BACKUP_JOB, now=now)["redispatched"]
    for spec in (RESTORE_JOB, DRILL_JOB):
        swept = job_sweep(spec, now=now)
        counts["redispatched"] += swept["redispatched"]
        counts["failed"] += swept["failed"]
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
    return job_fail_dead(BACKUP_JOB, now=now or timezone.now())


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
        if not job_finish(
            Backup,
            backup.pk,
            from_status=BackupStatus.RUNNING,
            to_status=BackupStatus.FAILED,
            now=now,
            message=message,
        ):
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
