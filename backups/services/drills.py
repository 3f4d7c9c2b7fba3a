"""Restore drills: restore a backup into a scratch database, compare its row counts with the
ones recorded when it was taken, drop the scratch database."""

from __future__ import annotations

import secrets
import time

from django.core.exceptions import ValidationError
from django.utils import timezone

from backups.models import (
    Backup,
    BackupPlan,
    BackupStatus,
    DrillResult,
    RestoreDrill,
    RestoreStatus,
)
from backups.services._common import (
    OPERATION_TIME_LIMIT,
    _archive_chunks,
    _claim,
    _file_matches_checksum,
    _require,
    logger,
)
from backups.services.alerts import _alert_database_admins
from backups.storage import StorageError, storage_for
from opsportal.actors import acting_user
from opsportal.audit.models import AuditAction, AuditOutcome
from opsportal.audit.services import audit_record
from opsportal.queueing import enqueue_after_commit
from opsportal.systems.adapters import pg_tools, postgres
from opsportal.systems.adapters.errors import AdapterError


def drill_request(*, backup: Backup, actor: object | None = None) -> RestoreDrill:
    _require(actor, "backups.drill_backup")
    if not backup.is_restorable:
        raise ValidationError(f"Backup #{backup.pk} has no file to drill with.")
    drill = RestoreDrill.objects.create(backup=backup, requested_by=acting_user(actor))
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
    status, message, mismatches, compared = RestoreStatus.FAILED, "", {}, 0
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
            status = RestoreStatus.SUCCEEDED
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
    passed = status == RestoreStatus.SUCCEEDED
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
