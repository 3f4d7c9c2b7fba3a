"""Recurring security and maintenance tasks (the runbook's "Regular Security Tasks"): their
due dates, recording them done, overdue reminders, and the weekly scan's row-first runs."""

from __future__ import annotations

import datetime as dt
import json
import logging

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from maintenance import recurrence
from maintenance.models import OccurrenceStatus, RecurringTask, ScanStatus, TaskKind, TaskOccurrence
from maintenance.services._common import (
    UNDISPATCHED_AFTER,
    MaintenanceError,
    _notify_audience,
    _require,
    _utc,
)
from opsportal.actors import acting_user
from opsportal.audit.models import AuditAction, AuditOutcome
from opsportal.audit.services import audit_record
from opsportal.jobs import JobSpec, job_claim, job_finish, job_sweep
from opsportal.people.models import Notification, Responsibility
from opsportal.people.services import notify
from opsportal.queueing import enqueue_after_commit

logger = logging.getLogger(__name__)


# The runbook's "Regular Security Tasks" (rules read in UTC).
RUNBOOK_TASKS = [
    {
        "name": "Weekly security scan",
        "kind": TaskKind.SECURITY_SCAN,
        "rrule": "FREQ=WEEKLY;BYDAY=MO",
        "first_due": dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC),
        "description": "Review the automatic findings (deployment checks, known "
        "vulnerabilities in pinned requirements) and the security logs.",
    },
    {
        "name": "Monthly dependency updates",
        "kind": TaskKind.DEPENDENCY_UPDATES,
        "rrule": "FREQ=MONTHLY;BYMONTHDAY=1",
        "first_due": dt.datetime(2026, 1, 1, 9, 0, tzinfo=dt.UTC),
        "description": "Update pinned dependencies and images; attach the change summary.",
    },
    {
        "name": "Quarterly penetration testing",
        "kind": TaskKind.PENETRATION_TEST,
        "rrule": "FREQ=MONTHLY;BYMONTH=3,6,9,12;BYMONTHDAY=-1",
        "first_due": dt.datetime(2026, 3, 31, 17, 0, tzinfo=dt.UTC),
        "description": "Penetration test of the platform; attach the report.",
    },
    {
        "name": "Annual security audit",
        "kind": TaskKind.SECURITY_AUDIT,
        "rrule": "FREQ=YEARLY;BYMONTH=11;BYMONTHDAY=30",
        "first_due": dt.datetime(2026, 11, 30, 17, 0, tzinfo=dt.UTC),
        "description": "Annual security audit; attach the auditor's report.",
    },
]
# A reminder about an overdue task is repeated at most this often.
REMINDER_INTERVAL = dt.timedelta(days=1)
SCAN_TIME_LIMIT = dt.timedelta(minutes=10)


def task_validate(*, task: RecurringTask):
    """Refuse an unreadable rule, an unknown time zone, or a rule that never comes due."""
    if task.first_due is None:
        raise ValidationError({"first_due": "Enter the first due date."})
    rule = recurrence.parse_rule(task.rrule, first_start=task.first_due, time_zone=task.time_zone)
    if not recurrence.validation_starts(rule, time_zone=task.time_zone, first_start=task.first_due):
        raise ValidationError(
            {
                "rrule": "This rule has no due date in the five years after the first one "
                "(e.g. the 30th of February, or an UNTIL before the first due date). Check "
                f"BYMONTH/BYMONTHDAY/BYSETPOS and UNTIL; example: {recurrence.EXAMPLE}."
            }
        )
    return rule


@transaction.atomic
def task_generate_occurrences(
    *, task: RecurringTask, now: dt.datetime | None = None
) -> list[TaskOccurrence]:
    """Due dates from the task's rule, from the last week up to `generate_ahead_days`.

    The look-back (so a date just missed can still be recorded late) never reaches before
    the task's first generated due date: a task generated for the first time (a fresh
    install, a new task) starts from now, so it is not overdue for dates from before the
    portal tracked it."""
    if not task.active:
        return []
    now = now or timezone.now()
    rule = recurrence.parse_rule(task.rrule, first_start=task.first_due, time_zone=task.time_zone)
    first_tracked = task.occurrences.order_by("due_at").values_list("due_at", flat=True).first()
    start = max(task.first_due, now - dt.timedelta(days=7), first_tracked or now)
    due_dates = recurrence.occurrences(
        rule,
        time_zone=task.time_zone,
        start=start,
        end=now + dt.timedelta(days=task.generate_ahead_days),
    )
    existing = set(task.occurrences.filter(due_at__in=due_dates).values_list("due_at", flat=True))
    created = TaskOccurrence.objects.bulk_create(
        TaskOccurrence(task=task, due_at=due) for due in due_dates if due not in existing
    )
    if created:
        audit_record(
            action=AuditAction.OPERATION,
            obj=task,
            message=f"Generated {len(created)} due date(s).",
        )
    return created


def tasks_generate(*, now: dt.datetime | None = None) -> int:
    return sum(
        len(task_generate_occurrences(task=task, now=now))
        for task in RecurringTask.objects.filter(active=True)
    )


COMPLETE_OCCURRENCE = "maintenance.complete_taskoccurrence"


def occurrence_complete_check(
    *, occurrence: TaskOccurrence, notes: str = "", evidence=None
) -> None:
    """Refuse (MaintenanceError) what `occurrence_complete` would refuse for these notes and
    evidence, so the admin form can say so next to the fields before anything is saved."""
    if occurrence.status != OccurrenceStatus.OPEN:
        raise MaintenanceError(
            f"This occurrence is already {occurrence.get_status_display().lower()}."
        )
    if not notes.strip() and not evidence and not occurrence.evidence:
        raise MaintenanceError("Add notes or attach evidence of what was done.")


def occurrence_complete(
    *,
    occurrence: TaskOccurrence,
    actor: object | None = None,
    notes: str = "",
    evidence=None,
) -> TaskOccurrence:
    """Record the task as done: who, when, notes, attached evidence."""
    _require(actor, COMPLETE_OCCURRENCE, "record a recurring task as done")
    with transaction.atomic():
        occurrence = TaskOccurrence.objects.select_for_update().get(pk=occurrence.pk)
        occurrence_complete_check(occurrence=occurrence, notes=notes, evidence=evidence)
        occurrence.status = OccurrenceStatus.DONE
        occurrence.completed_at = timezone.now()
        occurrence.completed_by = acting_user(actor)
        occurrence.notes = notes.strip()
        if evidence:
            occurrence.evidence = evidence
        occurrence.save()
        audit_record(
            action=AuditAction.OPERATION,
            obj=occurrence,
            message=f"Done. {notes.strip()[:500]}".strip()
            + (f" Evidence: {occurrence.evidence.name}" if occurrence.evidence else ""),
            actor=actor,
        )
    return occurrence


def _notify_team(*, team, subject: str, body: str, about) -> list[Notification]:
    if team.responsibility:
        return notify(responsibility=team.responsibility, subject=subject, body=body, about=about)
    return _notify_audience(
        emails=[team.email] if team.email else [],
        webhook=None,
        subject=subject,
        body=body,
        about=about,
    )


def occurrences_remind_overdue(*, now: dt.datetime | None = None) -> int:
    """Remind the owning team of tasks past their due date (again once a day)."""
    from maintenance.selectors import occurrences_overdue

    now = now or timezone.now()
    reminded = 0
    for occurrence in occurrences_overdue(now=now, repeat_after=REMINDER_INTERVAL):
        with transaction.atomic():
            if not TaskOccurrence.objects.filter(
                pk=occurrence.pk, reminded_at=occurrence.reminded_at
            ).update(reminded_at=now):
                continue  # another sweeper run got it
            late = now - occurrence.due_at
            subject = f"Overdue: {occurrence.task.name} (due {_utc(occurrence.due_at)})"
            body = (
                f"{occurrence.task.name} was due {_utc(occurrence.due_at)}, "
                f"{late.days} day(s) {late.seconds // 3600} h ago, and is not recorded as done.\n"
                f"{occurrence.task.description}"
            )
            sent = _notify_team(
                team=occurrence.task.team, subject=subject, body=body, about=occurrence
            )
            audit_record(
                action=AuditAction.OPERATION,
                obj=occurrence,
                message=f"Overdue reminder sent to {occurrence.task.team} "
                f"({len(sent)} destination(s)).",
            )
            reminded += 1
    return reminded


def security_scan_request(
    *, occurrence: TaskOccurrence, actor: object | None = None
) -> TaskOccurrence:
    """Queue the automatic part of the weekly security scan."""
    _require(actor, COMPLETE_OCCURRENCE, "run a security scan")
    with transaction.atomic():
        claimed = (
            TaskOccurrence.objects.filter(pk=occurrence.pk)
            .exclude(scan_status__in=[ScanStatus.QUEUED, ScanStatus.RUNNING])
            .update(
                scan_status=ScanStatus.QUEUED, scan_queued_at=timezone.now(), scan_started_at=None
            )
        )
        occurrence.refresh_from_db()
        if not claimed:
            raise MaintenanceError("A scan for this occurrence is already queued or running.")
        audit_record(
            action=AuditAction.OPERATION,
            obj=occurrence,
            outcome=AuditOutcome.REQUESTED,
            message="Security scan requested.",
            actor=actor,
        )
        _dispatch_scan(occurrence.pk)
    return occurrence


def _dispatch_scan(occurrence_id: int) -> None:
    from maintenance.tasks import run_security_scan

    enqueue_after_commit(run_security_scan, occurrence_id)


def security_scan_run(*, occurrence_id: int) -> TaskOccurrence | None:
    """The worker's part: deployment checks and the requirements audit, attached as findings."""
    from django.core.files.base import ContentFile

    from maintenance import scans

    if not job_claim(
        TaskOccurrence,
        occurrence_id,
        from_status=ScanStatus.QUEUED,
        to_status=ScanStatus.RUNNING,
        status_field="scan_status",
        scan_started_at=timezone.now(),
    ):
        return None
    occurrence = TaskOccurrence.objects.select_related("task").get(pk=occurrence_id)
    try:
        findings = {
            "ran_at": timezone.now().isoformat(),
            "deployment_checks": scans.deployment_checks(),
            "vulnerability_audit": scans.requirements_audit(),
        }
    except Exception as exc:
        logger.exception("Security scan of occurrence %s failed", occurrence_id)
        occurrence.scan_status = ScanStatus.FAILED
        occurrence.findings = {"error": f"{type(exc).__name__}: {exc}"}
        occurrence.save(update_fields=["scan_status", "findings"])
        audit_record(
            action=AuditAction.OPERATION,
            obj=occurrence,
            outcome=AuditOutcome.FAILURE,
            message=f"Security scan failed: {exc}",
        )
        return occurrence
    occurrence.findings = findings
    occurrence.scan_status = ScanStatus.FINISHED
    fields = ["findings", "scan_status"]
    if not occurrence.evidence:
        occurrence.evidence.save(
            f"security-scan-{occurrence.due_at:%Y-%m-%d}.json",
            ContentFile(json.dumps(findings, indent=2).encode()),
            save=False,
        )
        fields.append("evidence")
    occurrence.save(update_fields=fields)
    summary = "; ".join(
        f"{name.replace('_', ' ')}: {part['status']} ({part['summary']})"
        for name, part in findings.items()
        if isinstance(part, dict)
    )
    audit_record(action=AuditAction.OPERATION, obj=occurrence, message=f"Security scan: {summary}")
    return occurrence


def security_scans_due(*, now: dt.datetime | None = None) -> int:
    """Queue the scan of weekly-scan occurrences that have come due and not been scanned."""
    now = now or timezone.now()
    due = TaskOccurrence.objects.filter(
        task__kind=TaskKind.SECURITY_SCAN,
        task__active=True,
        status=OccurrenceStatus.OPEN,
        due_at__lte=now,
        scan_status=ScanStatus.NONE,
    )
    count = 0
    for occurrence in due:
        security_scan_request(occurrence=occurrence)
        count += 1
    return count


def _scan_fail_dead(occurrence: TaskOccurrence, now: dt.datetime) -> bool:
    return job_finish(
        TaskOccurrence,
        occurrence.pk,
        from_status=ScanStatus.RUNNING,
        to_status=ScanStatus.FAILED,
        status_field="scan_status",
        finished_field=None,
        findings={"error": "The worker did not finish the scan in time (it may have died)."},
    )


# How the shared sweeper (opsportal.jobs) treats security scans: the scan is a job living
# in the occurrence's scan_* columns.
SCAN_JOB = JobSpec(
    model=TaskOccurrence,
    queued=ScanStatus.QUEUED,
    running=ScanStatus.RUNNING,
    status_field="scan_status",
    dispatch=lambda occurrence: _dispatch_scan(occurrence.pk),
    fail=_scan_fail_dead,
    lost_after=UNDISPATCHED_AFTER,
    queued_field="scan_queued_at",
    lost_lookup="lte",
    started_field="scan_started_at",
    time_limit=SCAN_TIME_LIMIT,
    fail_at_limit=True,
)


def security_scans_sweep(*, now: dt.datetime | None = None) -> int:
    """Re-dispatch scans the broker lost; fail (and count) scans whose worker died."""
    return job_sweep(SCAN_JOB, now=now or timezone.now())["failed"]


def security_tasks_load_defaults() -> None:
    from opsportal.people.models import Team

    team = Team.objects.filter(responsibility=Responsibility.SECURITY).first()
    if team is None:
        return
    for values in RUNBOOK_TASKS:
        if not RecurringTask.objects.filter(name=values["name"]).exists():
            RecurringTask.objects.create(team=team, **values)
