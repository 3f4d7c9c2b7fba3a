"""Backups that look wrong: a verified backup compared with the database's recent backups.

A backup that finishes and reads back fine can still be a bad backup: a table truncated by
mistake, a dump of the wrong (empty) database, a schema dropped. After verification the
backup is compared with the last few verified backups of the same database taken in the same
format and compression (a plain SQL dump is not comparable with a compressed custom one):

- its dump is under half the median size of the last 7;
- it took under a fifth of their median time (judged only when that median is at least a
  second: sub-second dumps vary more than that by chance);
- a table lost more than the plan's `suspicious_row_drop_percent` of its rows since the
  previous backup (tables that had fewer than 100 rows are left out: a queue table going from
  3 rows to 0 is not evidence);
- a table of the previous backup is missing.

Any of these marks the backup suspicious, stores the findings on it, and hands a
"suspicious backup" alert to incident handling (one fingerprint per database, so repeats join
the open incident instead of paging again; its category routes it to the DBAs). A backup with
fewer than three earlier comparable backups is not judged, and says so.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.utils import timezone

from backups.models import (
    DEFAULT_ROW_DROP_PERCENT,
    Backup,
    BackupStatus,
    HistoryCheck,
    Verification,
)
from backups.services._common import _require, logger
from backups.services.alerts import _alert_database_admins
from opsportal.audit.models import AuditAction, AuditOutcome
from opsportal.audit.services import audit_record
from opsportal.monitoring.handoff import alert_hand_off

HISTORY_WINDOW = 7  # the "median size of the last 7"
MIN_HISTORY = 3  # fewer earlier backups than this: no judgement
SIZE_SHARE = 0.5  # under half the median size
DURATION_SHARE = 0.2  # under a fifth of the median time
DURATION_MIN_SECONDS = 1.0  # medians below this are noise, not "the usual time"
ROW_DROP_MIN_ROWS = 100  # tables smaller than this in the previous backup are not judged

SUSPICIOUS_SEVERITY = "sev2"  # as a failed scheduled backup: the database is not protected
SUSPICIOUS_CATEGORY = "database"  # the incident's routing pages the DBAs (and the on-call)


@dataclass(frozen=True)
class BackupFigures:
    """What one backup is compared on."""

    size_bytes: int
    duration_seconds: float
    table_row_counts: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, backup: Backup) -> BackupFigures:
        return cls(
            size_bytes=backup.size_bytes or 0,
            duration_seconds=backup.duration_seconds or 0.0,
            table_row_counts=dict(backup.table_row_counts or {}),
        )


def _size(size: float) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size:.0f} bytes"


def backup_history_findings(
    *,
    current: BackupFigures,
    earlier: Sequence[BackupFigures],
    row_drop_percent: int = DEFAULT_ROW_DROP_PERCENT,
) -> list[str]:
    """What makes `current` look wrong next to `earlier` (newest first, at least
    MIN_HISTORY of them), one sentence each; empty when it is in line with its history."""
    if len(earlier) < MIN_HISTORY:
        raise ValueError(f"Comparing needs {MIN_HISTORY} earlier backups, got {len(earlier)}.")
    window = list(earlier[:HISTORY_WINDOW])
    findings: list[str] = []
    median_size = statistics.median(b.size_bytes for b in window)
    if current.size_bytes < SIZE_SHARE * median_size:
        findings.append(
            f"The dump is {_size(current.size_bytes)}, under half the median "
            f"{_size(median_size)} of the last {len(window)} backups."
        )
    median_duration = statistics.median(b.duration_seconds for b in window)
    if (
        median_duration >= DURATION_MIN_SECONDS
        and current.duration_seconds < DURATION_SHARE * median_duration
    ):
        findings.append(
            f"It took {current.duration_seconds:.1f} s, under a fifth of the usual "
            f"{median_duration:.1f} s (median of the last {len(window)} backups)."
        )
    previous = window[0].table_row_counts
    for table in sorted(previous):
        before = previous[table]
        if table not in current.table_row_counts:
            findings.append(
                f"Table {table} is missing (it had {before:,} rows in the previous backup)."
            )
            continue
        now = current.table_row_counts[table]
        if before >= ROW_DROP_MIN_ROWS and (before - now) * 100 > row_drop_percent * before:
            findings.append(
                f"Table {table} has {now:,} rows, down {100 * (before - now) / before:.0f} % "
                f"from {before:,} in the previous backup (more than {row_drop_percent} %)."
            )
    return findings


def _comparable_earlier(backup: Backup) -> list[Backup]:
    """The newest verified backups of the same database finished before `backup`, in the
    same format and compression (sizes of different formats are not comparable)."""
    return list(
        Backup.objects.filter(
            database_id=backup.database_id,
            status=BackupStatus.SUCCEEDED,
            verification=Verification.VERIFIED,
            format=backup.format,
            compression=backup.compression,
            finished_at__lt=backup.finished_at,
            size_bytes__isnull=False,
            duration_seconds__isnull=False,
        )
        .exclude(pk=backup.pk)
        .order_by("-finished_at", "-pk")
        .only("pk", "size_bytes", "duration_seconds", "table_row_counts", "history_check")[
            :HISTORY_WINDOW
        ]
    )


def alert_fingerprint_for(backup: Backup) -> str:
    """One "suspicious backup" alert per database: a second suspicious backup joins the
    incident the first one opened instead of paging again."""
    return f"backups:suspicious:database-{backup.database_id}"


def backup_compare_with_history(*, backup: Backup, actor: object | None = None) -> Backup:
    """Judge a verified backup against the database's recent backups (see the module's
    docstring); store the verdict and findings on it, audit them, and when it looks wrong
    raise the "suspicious backup" alert. A backup that did not succeed or is not verified
    is left "not compared"."""
    _require(actor, "backups.run_backup")
    if backup.status != BackupStatus.SUCCEEDED or backup.verification != Verification.VERIFIED:
        return backup
    earlier = _comparable_earlier(backup)
    row_drop_percent = (
        backup.plan.suspicious_row_drop_percent if backup.plan else DEFAULT_ROW_DROP_PERCENT
    )
    if len(earlier) < MIN_HISTORY:
        verdict = HistoryCheck.NOT_JUDGED
        warnings = [
            f"Not judged: only {len(earlier)} earlier verified backup(s) of this database in "
            f"the same format; {MIN_HISTORY} are needed before size, duration and row counts "
            "are compared."
        ]
    else:
        warnings = backup_history_findings(
            current=BackupFigures.of(backup),
            earlier=[BackupFigures.of(b) for b in earlier],
            row_drop_percent=row_drop_percent,
        )
        verdict = HistoryCheck.SUSPICIOUS if warnings else HistoryCheck.NORMAL
    backup.history_check = verdict
    backup.history_warnings = warnings
    backup.history_checked_at = timezone.now()
    Backup.objects.filter(pk=backup.pk).update(
        history_check=verdict,
        history_warnings=warnings,
        history_checked_at=backup.history_checked_at,
    )
    audit_record(
        action=AuditAction.OPERATION,
        obj=backup,
        actor=actor,
        outcome=AuditOutcome.FAILURE
        if verdict == HistoryCheck.SUSPICIOUS
        else AuditOutcome.SUCCESS,
        message="Compared with history: "
        + {
            HistoryCheck.NOT_JUDGED: " ".join(warnings),
            HistoryCheck.NORMAL: f"in line with the last {len(earlier)} backups",
            HistoryCheck.SUSPICIOUS: f"Suspicious: {' '.join(warnings)}",
        }[verdict],
    )
    if verdict == HistoryCheck.SUSPICIOUS:
        _raise_suspicious(backup)
    elif verdict == HistoryCheck.NORMAL and _previous_was_suspicious(backup, earlier):
        try:
            _hand_off(backup, status="resolved")
        except Exception:
            # Only a note on the incident's timeline: the backup itself is done and good.
            logger.exception("Could not hand over that backup #%s is normal again", backup.pk)
    return backup


def _previous_was_suspicious(backup: Backup, earlier: list[Backup]) -> bool:
    judged = [
        b for b in earlier if b.history_check in (HistoryCheck.NORMAL, HistoryCheck.SUSPICIOUS)
    ]
    return bool(judged) and judged[0].history_check == HistoryCheck.SUSPICIOUS


def _evidence(backup: Backup) -> str:
    lines = [
        f"Backup #{backup.pk} of {backup.database} ({backup.file_name}, "
        f"{_size(backup.size_bytes or 0)}, {backup.duration_seconds or 0:.1f} s) was verified "
        "but is far off the database's recent backups:",
        *(f"- {warning}" for warning in backup.history_warnings),
        "",
        "Check whether the data was really deleted on the database (a dropped or truncated "
        "table) before relying on this backup; the earlier backups still hold it.",
    ]
    return "\n".join(lines)


def _hand_off(backup: Backup, *, status: str) -> object:
    title = (
        f"Suspicious backup #{backup.pk} of {backup.database}"
        if status == "firing"
        else f"Backup #{backup.pk} of {backup.database} is in line with its history again"
    )
    return alert_hand_off(
        fingerprint=alert_fingerprint_for(backup),
        status=status,
        title=title,
        severity=SUSPICIOUS_SEVERITY,
        category=SUSPICIOUS_CATEGORY,
        systems=[backup.database_id],
        runbook_name=None,
        evidence=_evidence(backup) if status == "firing" else "",
        source="backups",
        auto_resolve=False,
    )


def _raise_suspicious(backup: Backup) -> None:
    """Through incident handling's alert receiver (its usual rules: an open incident with the
    same fingerprint is joined, a maintenance window suppresses it, the category's team is
    paged); if no incident could be opened the DBAs are told directly."""
    try:
        alert = _hand_off(backup, status="firing")
    except Exception:
        logger.exception("Could not raise the suspicious-backup alert for backup #%s", backup.pk)
        alert = None
    incident_id = getattr(alert, "incident_id", None)
    if incident_id is not None:
        backup.history_incident_id = incident_id
        Backup.objects.filter(pk=backup.pk).update(history_incident_id=incident_id)
        return
    suppressed = alert is not None and getattr(alert, "suppressed_by_id", None) is not None
    if not suppressed:
        _alert_database_admins(
            plan=backup.plan,
            about=backup,
            subject=f"Suspicious backup #{backup.pk} of {backup.database}",
            body=_evidence(backup),
            open_incident=False,
        )
