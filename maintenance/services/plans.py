"""Recurring maintenance plans (the runbook's "Scheduled Maintenance"): validating their
rules, saving them, and generating their windows ahead."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from maintenance import recurrence
from maintenance.models import (
    MAX_GENERATE_AHEAD_DAYS,
    MAX_WINDOWS_AT_ONCE,
    MaintenancePlan,
    MaintenanceWindow,
    WindowKind,
)
from maintenance.services._common import _require
from maintenance.services.checklists import _checklist_create
from maintenance.services.windows import lead_hours_validate
from opsportal.audit.models import AuditAction
from opsportal.audit.services import audit_record
from opsportal.systems.models import System


def plan_validate(*, plan: MaintenancePlan, now: dt.datetime | None = None):
    lead_hours_validate(value=plan.announce_lead_hours)
    rule = recurrence.validate_plan(
        rrule=plan.rrule,
        first_start=plan.first_start,
        time_zone=plan.time_zone,
        duration=dt.timedelta(minutes=plan.duration_minutes or 0),
    )
    # One save generates every window of the look-ahead, each with its checklist: a daily
    # rule over 400 days would be 400 windows and thousands of steps in one request.
    now = now or timezone.now()
    ahead = min(plan.generate_ahead_days or 0, MAX_GENERATE_AHEAD_DAYS)
    count = len(
        recurrence.occurrences(
            rule, time_zone=plan.time_zone, start=now, end=now + dt.timedelta(days=ahead)
        )
    )
    if count > MAX_WINDOWS_AT_ONCE:
        raise ValidationError(
            {
                "generate_ahead_days": f"This rule gives {count} windows in the next {ahead} "
                f"days; a plan generates at most {MAX_WINDOWS_AT_ONCE} at once. Shorten the "
                "look-ahead or make the rule less frequent."
            }
        )
    return rule


def plan_occurrences(
    *, plan: MaintenancePlan, start: dt.datetime, end: dt.datetime
) -> list[tuple[dt.datetime, dt.datetime]]:
    """(start, end) in UTC of the plan's occurrences starting in [start, end)."""
    rule = recurrence.parse_rule(plan.rrule, first_start=plan.first_start, time_zone=plan.time_zone)
    duration = dt.timedelta(minutes=plan.duration_minutes)
    return [
        (at, at + duration)
        for at in recurrence.occurrences(rule, time_zone=plan.time_zone, start=start, end=end)
    ]


@transaction.atomic
def plan_save(
    *, plan: MaintenancePlan, systems: Iterable[System] | None = None, actor: object | None = None
) -> MaintenancePlan:
    """Validate the rule and save the plan (create or change), then generate its windows."""
    _require(actor, "maintenance.change_maintenanceplan", "change a maintenance plan")
    plan_validate(plan=plan)
    plan.save()
    if systems is not None:
        plan.systems.set(list(systems))
    plan_generate_windows(plan=plan)
    return plan


@transaction.atomic
def plan_generate_windows(
    *, plan: MaintenancePlan, now: dt.datetime | None = None
) -> list[MaintenanceWindow]:
    """Create the plan's windows starting in the next `generate_ahead_days` that do not
    exist yet. Moved or cancelled occurrences keep their occurrence_start, so they are
    never recreated."""
    if not plan.active:
        return []
    now = now or timezone.now()
    horizon = now + dt.timedelta(days=min(plan.generate_ahead_days, MAX_GENERATE_AHEAD_DAYS))
    # The cap holds for rows saved before the bound existed too; later ticks add the rest.
    wanted = plan_occurrences(plan=plan, start=now, end=horizon)[:MAX_WINDOWS_AT_ONCE]
    existing = set(
        MaintenanceWindow.objects.filter(
            plan=plan, occurrence_start__gte=now, occurrence_start__lt=horizon
        ).values_list("occurrence_start", flat=True)
    )
    systems = list(plan.systems.all())
    created = []
    for starts_at, ends_at in wanted:
        if starts_at in existing:
            continue
        window = MaintenanceWindow(
            title=f"{plan.name} {starts_at:%Y-%m-%d}",
            kind=plan.kind,
            plan=plan,
            occurrence_start=starts_at,
            starts_at=starts_at,
            ends_at=ends_at,
            expected_impact=plan.expected_impact,
            rollback_plan=plan.rollback_plan,
            owner=plan.owner,
            emails=plan.emails,
            webhook=plan.webhook,
            announce_lead_hours=plan.announce_lead_hours,
        )
        window.save()
        window.systems.set(systems)
        _checklist_create(window)
        created.append(window)
    if created:
        audit_record(
            action=AuditAction.OPERATION,
            obj=plan,
            message=f"Generated {len(created)} window(s): "
            + ", ".join(f"{w.starts_at:%Y-%m-%d %H:%M}" for w in created),
        )
    return created


def plans_generate(*, now: dt.datetime | None = None) -> int:
    return sum(
        len(plan_generate_windows(plan=plan, now=now))
        for plan in MaintenancePlan.objects.filter(active=True)
    )


# The runbook's "Scheduled Maintenance", as plans (RFC 5545 rules, read in UTC).
RUNBOOK_PLANS = [
    {
        "name": "Monthly maintenance",
        "kind": WindowKind.MONTHLY,
        "rrule": "FREQ=MONTHLY;BYDAY=SA;BYSETPOS=3",
        "first_start": dt.datetime(2026, 1, 17, 2, 0, tzinfo=dt.UTC),
        "duration_minutes": 120,
        "expected_impact": "Short interruptions of the platform while services restart.",
    },
    {
        "name": "Quarterly security updates and patches",
        "kind": WindowKind.QUARTERLY_SECURITY,
        # The runbook names no day: the first Saturday, clear of the monthly window.
        "rrule": "FREQ=MONTHLY;BYMONTH=1,4,7,10;BYDAY=SA;BYSETPOS=1",
        "first_start": dt.datetime(2026, 1, 3, 2, 0, tzinfo=dt.UTC),
        "duration_minutes": 120,
        "expected_impact": "Security updates and patches; services restart one by one.",
    },
    {
        "name": "Annual major version upgrades",
        "kind": WindowKind.ANNUAL_UPGRADE,
        "rrule": "FREQ=YEARLY;BYMONTH=2;BYDAY=SA;BYSETPOS=1",
        "first_start": dt.datetime(2026, 2, 7, 2, 0, tzinfo=dt.UTC),
        "duration_minutes": 240,
        "expected_impact": "Major version upgrades; the platform may be unavailable.",
    },
]
