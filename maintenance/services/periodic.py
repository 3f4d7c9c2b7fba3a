"""What runs by itself: the every-minute pass over windows, checklists and security tasks,
and loading the runbook's defaults (plans, security tasks) with the schedules that drive
them."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone

from maintenance.models import MaintenancePlan
from maintenance.services.announcements import windows_announce_due
from maintenance.services.checklists import steps_prepare_due, steps_sweep
from maintenance.services.plans import RUNBOOK_PLANS, plan_validate, plans_generate
from maintenance.services.security_tasks import (
    occurrences_remind_overdue,
    security_scans_due,
    security_scans_sweep,
    security_tasks_load_defaults,
    tasks_generate,
)
from maintenance.services.windows import windows_release_alerts_due
from opsportal.schedules import periodic_task_ensure


def maintenance_load_defaults() -> None:
    for values in RUNBOOK_PLANS:
        if not MaintenancePlan.objects.filter(name=values["name"]).exists():
            plan = MaintenancePlan(**values)
            plan_validate(plan=plan)
            plan.save()
    security_tasks_load_defaults()
    # A fresh install shows its coming windows and due dates at once, not after the
    # nightly generation; generating is idempotent, so a second load creates nothing.
    plans_generate()
    tasks_generate()
    periodic_task_ensure(
        name="Maintenance: announcements, checklists, sweeper",
        task="maintenance.tick",
        every_seconds=60,
        description="Sends due announcements, runs pre-maintenance steps, re-dispatches "
        "lost steps, reminds owners of overdue security tasks.",
    )
    periodic_task_ensure(
        name="Maintenance: generate upcoming windows and task due dates",
        task="maintenance.generate",
        crontab={"minute": "15", "hour": "1"},
        description="Creates the plans' windows and the recurring tasks' occurrences ahead.",
    )


def maintenance_tick(*, now: dt.datetime | None = None) -> dict[str, object]:
    """The every-minute pass: announcements, pre-maintenance steps, sweeper, reminders."""
    now = now or timezone.now()
    return {
        "announced": windows_announce_due(now=now),
        "prepared": steps_prepare_due(now=now),
        "steps": steps_sweep(now=now),
        "scans_queued": security_scans_due(now=now),
        "scans_failed": security_scans_sweep(now=now),
        "reminded": occurrences_remind_overdue(now=now),
        "alerts_released": windows_release_alerts_due(now=now),
    }
