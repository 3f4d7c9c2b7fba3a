"""Restores: the typed confirmation and reason, then on a worker the checksum, the other
sessions, a verified safety backup, and the restore itself."""

from __future__ import annotations

import time

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from backups.models import (
    Backup,
    BackupStatus,
    BackupTrigger,
    Restore,
    RestoreStatus,
    Verification,
)
from backups.services._common import (
    OPERATION_TIME_LIMIT,
    _archive_chunks,
    _backup_create,
    _claim,
    _file_matches_checksum,
    _require,
    logger,
)
from backups.services.runs import BackupBusy, backup_run
from backups.storage import StorageError, storage_for
from opsportal.actors import acting_user
from opsportal.approvals.services import (
    ApprovalRefused,
    approval_policy_for,
    approval_request,
    approval_subject_register,
)
from opsportal.audit.models import AuditAction, AuditOutcome
from opsportal.audit.services import audit_record
from opsportal.jobs import job_claim, job_finish
from opsportal.queueing import enqueue_after_commit
from opsportal.systems.adapters import pg_preview, pg_tools, postgres
from opsportal.systems.adapters.errors import AdapterError
from opsportal.systems.models import PostgresDatabase


def restore_request(
    *,
    backup: Backup,
    target: PostgresDatabase,
    actor: object | None,
    reason: str,
    confirmation: str,
    disconnect_sessions: bool = False,
    dispatch: bool = True,
    preview: dict | None = None,
) -> Restore:
    """Record a restore of `backup` into `target` and run it on a worker after commit
    (`dispatch=False`: the caller runs it, as `manage.py restore_backup` does).

    The operator confirms by typing the target's registered system name (unique, unlike
    the database name, which is often the same on production and staging); a reason is
    required. `preview` is what the page showed (restore_preview), stored on the restore.
    """
    _require(actor, "backups.restore_backup")
    restore_check(backup=backup, target=target, reason=reason, confirmation=confirmation)
    # Two-person approval: a person's restore waits for another DBA (the command line's
    # `restore_backup`, run by someone with the server's shell, is not asked).
    policy = approval_policy_for(RESTORE_POLICY) if acting_user(actor) is not None else None
    with transaction.atomic():
        restore = Restore.objects.create(
            backup=backup,
            target=target,
            reason=reason.strip()[:500],
            requested_by=acting_user(actor),
            disconnect_sessions=disconnect_sessions,
            preview=preview or {},
            status=RestoreStatus.AWAITING if policy is not None else RestoreStatus.QUEUED,
        )
        audit_record(
            action=AuditAction.OPERATION,
            obj=restore,
            actor=actor,
            outcome=AuditOutcome.REQUESTED,
            message=f"Restore of backup #{backup.pk} into {target} requested: {reason.strip()}"
            + (" (awaiting approval)" if policy is not None else ""),
        )
        if policy is not None:
            approval_request(
                subject=restore,
                policy=policy,
                actor=actor,
                summary=f"Restore of backup #{backup.pk} ({backup.database}, "
                f"{timezone.localtime(backup.requested_at):%Y-%m-%d %H:%M}) into {target}",
                reason=restore.reason,
            )
            return restore
    if dispatch:
        from backups.tasks import run_restore

        enqueue_after_commit(run_restore, restore.pk)
    return restore


def restore_check(
    *, backup: Backup, target: PostgresDatabase, reason: str, confirmation: str
) -> None:
    """ValidationError unless `backup` can be restored into `target` with this typed
    confirmation and reason (restore_request checks it; the page says it before asking)."""
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


RESTORE_POLICY = "restore"


def _restore_approved(restore: Restore, approval) -> None:
    """Approved: the waiting restore joins the queue and runs on a worker after commit."""
    if not job_claim(
        Restore, restore.pk, from_status=RestoreStatus.AWAITING, to_status=RestoreStatus.QUEUED
    ):
        restore.refresh_from_db()
        raise ApprovalRefused(
            f"Restore #{restore.pk} is {restore.get_status_display().lower()}, no longer "
            "awaiting approval; nothing was changed."
        )
    from backups.tasks import run_restore

    enqueue_after_commit(run_restore, restore.pk)


def _restore_dropped(restore: Restore, approval, message: str) -> None:
    job_finish(
        Restore,
        restore.pk,
        from_status=RestoreStatus.AWAITING,
        to_status=RestoreStatus.NOT_APPROVED,
        message=f"Not run: {message}",
    )


def restores_load_defaults() -> None:
    from opsportal.approvals.models import ApprovalScope
    from opsportal.approvals.services import approvals_load_defaults

    approvals_load_defaults(
        [(RESTORE_POLICY, "Restore of a backup", ApprovalScope.RESTORES, True, False)]
    )


def restores_approval_register() -> None:
    approval_subject_register(Restore, approved=_restore_approved, dropped=_restore_dropped)


def restore_run_now(*, restore: Restore) -> Restore:
    """Run a recorded restore in this process (`manage.py restore_backup`)."""
    return restore_run(restore_id=restore.pk) or restore


def restore_run(*, restore_id: int) -> Restore | None:
    """Checksum, sessions, safety backup, then the restore in one transaction."""
    if not _claim(Restore, restore_id):
        return None
    restore = Restore.objects.select_related("backup", "backup__database", "target").get(
        pk=restore_id
    )
    started = time.monotonic()
    backup, target = restore.backup, restore.target
    status, message = RestoreStatus.FAILED, ""
    try:
        message = _restore_steps(restore)
        status = RestoreStatus.SUCCEEDED
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
        outcome=AuditOutcome.SUCCESS if status == RestoreStatus.SUCCEEDED else AuditOutcome.FAILURE,
        message=f"Restore of backup #{backup.pk} into {target}: {message.splitlines()[0]}",
    )
    return restore


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
    before = _target_now(restore)
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
        _against_preview(restore, before)
        + f"Restored backup #{backup.pk} into {target.dbname} in {run.duration_seconds:.1f} s "
        f"(safety backup #{claimed.pk} taken first"
        + (f"; {terminated} session(s) disconnected" if terminated else "")
        + ")."
        + (f"\n{run.messages}" if run.messages else "")
    )


def restore_preview(*, backup: Backup, target: PostgresDatabase) -> dict:
    """What restoring `backup` into `target` replaces, read live for the confirmation page:
    the backup's size and age and the target's current size, tables and sessions. When the
    target cannot be read, `failed` says why (the restore can still be requested)."""
    taken = backup.finished_at or backup.requested_at
    preview = {
        "kind": "restore",
        "backup_id": backup.pk,
        "target_id": target.pk,
        "target": str(target),
        "taken_at": timezone.now().isoformat(),
        "backup_size_bytes": backup.size_bytes,
        "backup_taken_at": taken.isoformat() if taken else None,
        "backup_age_seconds": round((timezone.now() - taken).total_seconds()) if taken else None,
        "backup_database": str(backup.database),
        "failed": "",
    }
    started = time.monotonic()
    try:
        now = pg_preview.database_size(target)
    except AdapterError as exc:
        preview["failed"] = str(exc)
    else:
        preview.update(
            target_size_bytes=now["size_bytes"],
            target_tables=now["tables"],
            target_sessions=now["sessions"],
        )
    preview["seconds"] = round(time.monotonic() - started, 3)
    return preview


def _target_now(restore: Restore) -> dict | None:
    if not (restore.preview or {}).get("target_size_bytes"):
        return None
    try:
        return pg_preview.database_size(restore.target)
    except AdapterError:
        return None


def _against_preview(restore: Restore, now: dict | None) -> str:
    """What differed on the target between the confirmed preview and the restore."""
    seen = restore.preview or {}
    if not seen:
        return ""
    if seen.get("failed"):
        return f"No preview was seen (it failed: {seen['failed']}).\n"
    if now is None:
        return ""
    changes = [
        f"{label} {seen[key]} at the preview, {now[field]} just before restoring"
        for label, key, field in (
            ("size (bytes)", "target_size_bytes", "size_bytes"),
            ("tables", "target_tables", "tables"),
            ("other sessions", "target_sessions", "sessions"),
        )
        if seen.get(key) != now[field]
    ]
    return (
        "Against the preview: the target's " + "; ".join(changes) + ".\n"
        if changes
        else "The target was as in the preview you confirmed.\n"
    )
