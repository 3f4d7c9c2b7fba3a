"""Retention: which backups a plan keeps (daily, weekly, monthly, newest verified) and
deleting the files of the others, each deletion audited."""

from __future__ import annotations

from django.utils import timezone

from backups.models import Backup, BackupPlan, BackupStatus, Verification
from backups.services._common import _require, logger
from backups.storage import StorageError, storage_for
from opsportal.audit.models import AuditAction
from opsportal.audit.services import audit_record


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
