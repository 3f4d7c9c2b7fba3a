"""Reads of backup state shared by health checks, metrics, the admin and commands."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db.models import OuterRef, Subquery

from backups.models import (
    Backup,
    BackupPlan,
    BackupStatus,
    HistoryCheck,
    RestoreDrill,
    Verification,
)


@dataclass(frozen=True)
class BackupFreshness:
    database: str
    critical: bool
    last_success_at: dt.datetime | None
    last_success_size_bytes: int | None
    last_success_duration_seconds: float | None
    last_verified_at: dt.datetime | None
    last_drill_passed: bool | None
    last_drill_at: dt.datetime | None
    # The newest judged backup's comparison with its history: True when it looked wrong,
    # None while no backup of the database has been judged.
    last_suspicious: bool | None = None


def backup_freshness() -> list[BackupFreshness]:
    """Per enabled plan: its newest successful and newest verified backup, and the last
    drill. A constant number of queries however many plans there are."""
    succeeded = Backup.objects.filter(
        database=OuterRef("database"), status=BackupStatus.SUCCEEDED
    ).order_by("-finished_at")
    verified = succeeded.filter(verification=Verification.VERIFIED)
    judged = verified.filter(history_check__in=[HistoryCheck.NORMAL, HistoryCheck.SUSPICIOUS])
    drills = RestoreDrill.objects.filter(
        backup__database=OuterRef("database"), finished_at__isnull=False
    ).order_by("-finished_at")
    plans = (
        BackupPlan.objects.filter(enabled=True)
        .select_related("database")
        .annotate(
            last_success_at=Subquery(succeeded.values("finished_at")[:1]),
            last_success_size=Subquery(succeeded.values("size_bytes")[:1]),
            last_success_duration=Subquery(succeeded.values("duration_seconds")[:1]),
            last_verified_at=Subquery(verified.values("finished_at")[:1]),
            last_drill_status=Subquery(drills.values("status")[:1]),
            last_drill_at=Subquery(drills.values("finished_at")[:1]),
            last_history_check=Subquery(judged.values("history_check")[:1]),
        )
    )
    return [
        BackupFreshness(
            database=plan.database.name,
            critical=plan.database.critical,
            last_success_at=plan.last_success_at,
            last_success_size_bytes=plan.last_success_size,
            last_success_duration_seconds=plan.last_success_duration,
            last_verified_at=plan.last_verified_at,
            last_drill_passed=None
            if plan.last_drill_status is None
            else plan.last_drill_status == "succeeded",
            last_drill_at=plan.last_drill_at,
            last_suspicious=None
            if plan.last_history_check is None
            else plan.last_history_check == HistoryCheck.SUSPICIOUS,
        )
        for plan in plans
    ]


def newest_restorable(database) -> Backup | None:
    return (
        Backup.objects.filter(database=database, status=BackupStatus.SUCCEEDED, pruned_at=None)
        .order_by("-finished_at")
        .first()
    )


def latest_verified_backups() -> list[Backup]:
    """The newest verified backup (not pruned) of each database that has one: one query for
    the ids (a subquery per database, on the (database, status, -finished_at) index), one
    for the rows."""
    from opsportal.systems.models import PostgresDatabase

    newest = Backup.objects.filter(
        database=OuterRef("pk"),
        status=BackupStatus.SUCCEEDED,
        verification=Verification.VERIFIED,
        pruned_at=None,
    ).order_by("-finished_at", "-id")
    ids = PostgresDatabase.objects.annotate(latest=Subquery(newest.values("pk")[:1])).values_list(
        "latest", flat=True
    )
    return list(
        Backup.objects.filter(pk__in=[i for i in ids if i is not None])
        .select_related("database", "requested_by")
        .order_by("database__name")
    )


@dataclass(frozen=True)
class BackupProgress:
    """Where one requested backup stands, for another app waiting on it (a maintenance
    checklist's "back up before" step)."""

    label: str
    succeeded: bool
    failed: bool
    message: str
    size_bytes: int | None


def backups_progress(*, backup_ids: list[int]) -> list[BackupProgress]:
    """The backups of `backup_ids` that still exist (a missing one is simply not listed)."""
    return [
        BackupProgress(
            label=str(backup),
            succeeded=backup.status == BackupStatus.SUCCEEDED,
            failed=backup.status == BackupStatus.FAILED,
            message=backup.message,
            size_bytes=backup.size_bytes,
        )
        for backup in Backup.objects.filter(pk__in=backup_ids).select_related("database")
    ]


__all__ = [
    "BackupFreshness",
    "BackupProgress",
    "backup_freshness",
    "backups_progress",
    "latest_verified_backups",
    "newest_restorable",
]
