from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.utils import timezone

from opsportal.health import checks
from opsportal.health.models import Heartbeat, StatusReport
from opsportal.schedules import periodic_task_ensure

# The single row of StatusReport.
_REPORT_PK = 1


def heartbeat_record(*, name: str) -> None:
    Heartbeat.objects.update_or_create(name=name, defaults={"at": timezone.now()})


def status_report_record(*, outcomes: list[checks.CheckOutcome]) -> StatusReport:
    """Keep the outcome of a detailed check run (scheduled, or a staff/token request)."""
    report, _ = StatusReport.objects.update_or_create(
        pk=_REPORT_PK,
        defaults={
            "checked_at": timezone.now(),
            "ok": checks.overall_ok(outcomes),
            "checks": [o.as_dict() for o in outcomes],
        },
    )
    return report


def status_report_refresh() -> StatusReport:
    """Run every detailed check now (the scheduled task) and keep the outcome."""
    return status_report_record(outcomes=checks.run_checks())


def status_report_current_ok(*, now: dt.datetime | None = None) -> bool:
    """The overall status anonymous callers see, read from the newest report without any
    I/O to registered systems. A missing or stale report is failing: the scheduled checks
    themselves (beat, broker or worker) are not running."""
    report = StatusReport.objects.filter(pk=_REPORT_PK).only("checked_at", "ok").first()
    if report is None:
        return False
    age = ((now or timezone.now()) - report.checked_at).total_seconds()
    return report.ok and age <= settings.HEALTH_BEAT_MAX_AGE_SECONDS


def health_load_defaults() -> None:
    periodic_task_ensure(
        name="Beat heartbeat",
        task="health.beat_heartbeat",
        every_seconds=30,
        description="Proves beat, broker and a worker are alive (checked by /health/detailed).",
    )
    periodic_task_ensure(
        name="Detailed health checks",
        task="health.refresh_status",
        every_seconds=30,
        description="Runs /health/detailed's checks; anonymous callers of /health/detailed "
        "get the overall status of the newest run (without probing any system themselves).",
    )
    periodic_task_ensure(
        name="Check registered systems",
        task="systems.check_due",
        every_seconds=10,
        description="Checks each system whose own check interval has elapsed.",
    )
    periodic_task_ensure(
        name="Retry notifications",
        task="people.sweep_notifications",
        every_seconds=60,
        description="Delivers notifications whose retry is due or whose message was lost.",
    )
