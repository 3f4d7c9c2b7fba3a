"""Backup staleness in /health/detailed and backup figures in /metrics."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from django.conf import settings
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric

from backups.selectors import BackupFreshness, backup_freshness
from opsportal.health.checks import CheckFailed, register_check
from opsportal.health.metrics import register_gauges


def max_age_hours() -> float:
    # The runbook's daily backup plus two hours of slack.
    return float(getattr(settings, "BACKUP_MAX_AGE_HOURS", 26))


def _age_check(row: BackupFreshness, now) -> Callable[[], str]:
    # Computed from what the provider loaded: the check itself never touches the database.
    def check() -> str:
        limit = max_age_hours()
        if row.last_success_at is None:
            raise CheckFailed(f"{row.database} has no successful backup yet.")
        age = (now - row.last_success_at).total_seconds() / 3600
        verified = (
            f"{(now - row.last_verified_at).total_seconds() / 3600:.1f} h"
            if row.last_verified_at
            else "never"
        )
        text = f"newest backup {age:.1f} h old, newest verified {verified}"
        if age > limit:
            raise CheckFailed(f"{row.database}: {text} (older than {limit:g} h)")
        if row.last_verified_at is None or (
            (now - row.last_verified_at).total_seconds() / 3600 > limit
        ):
            raise CheckFailed(f"{row.database}: {text}; no verified backup within {limit:g} h")
        return text

    return check


def backup_checks() -> list[tuple[str, bool, Callable[[], str]]]:
    now = timezone.now()
    return [
        (f"backup:{row.database}", row.critical, _age_check(row, now)) for row in backup_freshness()
    ]


def backup_gauges() -> Iterable[Metric]:
    rows = backup_freshness()
    last = GaugeMetricFamily(
        "opsportal_backup_last_success_timestamp_seconds",
        "When the database's newest successful backup finished (Unix time).",
        labels=["database"],
    )
    size = GaugeMetricFamily(
        "opsportal_backup_last_success_size_bytes",
        "Size of the database's newest successful backup.",
        labels=["database"],
    )
    duration = GaugeMetricFamily(
        "opsportal_backup_last_success_duration_seconds",
        "How long the database's newest successful backup took.",
        labels=["database"],
    )
    drill = GaugeMetricFamily(
        "opsportal_backup_last_drill_success",
        "1 if the newest restore drill of the database passed, 0 if it failed.",
        labels=["database"],
    )
    drill_at = GaugeMetricFamily(
        "opsportal_backup_last_drill_timestamp_seconds",
        "When the newest restore drill of the database finished (Unix time).",
        labels=["database"],
    )
    suspicious = GaugeMetricFamily(
        "opsportal_backup_last_suspicious",
        "1 if the database's newest judged backup is far off its recent backups (size, "
        "duration or row counts), 0 if it is in line with them.",
        labels=["database"],
    )
    for row in rows:
        if row.last_suspicious is not None:
            suspicious.add_metric([row.database], 1 if row.last_suspicious else 0)
        if row.last_success_at is not None:
            last.add_metric([row.database], row.last_success_at.timestamp())
            size.add_metric([row.database], row.last_success_size_bytes or 0)
            duration.add_metric([row.database], row.last_success_duration_seconds or 0)
        if row.last_drill_passed is not None:
            drill.add_metric([row.database], 1 if row.last_drill_passed else 0)
            drill_at.add_metric([row.database], row.last_drill_at.timestamp())
    yield from (last, size, duration, drill, drill_at, suspicious)


def register() -> None:
    register_check("backups", backup_checks)
    register_gauges(backup_gauges)
