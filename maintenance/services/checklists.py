"""A window's checklist (the runbook's "Maintenance Procedures"): creating its steps,
ticking or skipping them, and the row-first runs of the automatic ones (queue, claim, run,
wait for backups, sweep)."""

from __future__ import annotations

import datetime as dt
import logging

from django.db import transaction
from django.utils import timezone

from maintenance.models import (
    UPCOMING_STATUSES,
    AnnouncementKind,
    ChecklistStep,
    MaintenanceWindow,
    Phase,
    StepAction,
    StepStatus,
    WindowStatus,
)
from maintenance.services._common import (
    CONDUCT,
    UNDISPATCHED_AFTER,
    MaintenanceError,
    _require,
    _utc,
)
from maintenance.services.announcements import window_announce
from opsportal.actors import acting_user
from opsportal.audit.models import AuditAction, AuditOutcome
from opsportal.audit.services import audit_record
from opsportal.jobs import JobSpec, job_claim, job_finish, job_sweep
from opsportal.queueing import enqueue_after_commit

logger = logging.getLogger(__name__)


# The runbook's "Maintenance Procedures", as each new window's checklist.
PREPARE_ROLLBACK = "Prepare rollback plan"
RUNBOOK_CHECKLIST: list[tuple[str, str, str]] = [
    (Phase.PRE, "Notify users", StepAction.NOTIFY_USERS),
    (Phase.PRE, "Back up systems", StepAction.BACKUP_SYSTEMS),
    (Phase.PRE, PREPARE_ROLLBACK, StepAction.MANUAL),
    (Phase.DURING, "Follow maintenance checklist", StepAction.MANUAL),
    (Phase.DURING, "Monitor system health", StepAction.VERIFY_HEALTH),
    (Phase.DURING, "Document changes", StepAction.MANUAL),
    (Phase.POST, "Verify system health", StepAction.VERIFY_HEALTH),
    (Phase.POST, "Update documentation", StepAction.MANUAL),
    (Phase.POST, "Notify completion", StepAction.NOTIFY_COMPLETION),
]
# How long a step may stay running before the sweeper assumes the worker died.
STEP_TIME_LIMITS = {
    StepAction.NOTIFY_USERS: dt.timedelta(minutes=2),
    StepAction.NOTIFY_COMPLETION: dt.timedelta(minutes=2),
    StepAction.BACKUP_SYSTEMS: dt.timedelta(minutes=2),
    StepAction.VERIFY_HEALTH: dt.timedelta(minutes=2),
}


# Backups a window waits for (pg_dump of a large database takes a while).
BACKUP_WAIT_LIMIT = dt.timedelta(hours=6)
BACKUP_POLL_SECONDS = 3
# Pre-maintenance automatic steps run by themselves this long before the start.
PREPARE_LEAD = dt.timedelta(hours=1)


def _checklist_create(window: MaintenanceWindow) -> None:
    ChecklistStep.objects.bulk_create(
        ChecklistStep(window=window, phase=phase, position=i, title=title, action=action)
        for i, (phase, title, action) in enumerate(RUNBOOK_CHECKLIST)
    )


def step_mark_done(
    *, step: ChecklistStep, actor: object | None = None, note: str = ""
) -> ChecklistStep:
    """A person ticks a manual step (or confirms an automatic one by hand, with a note)."""
    _require(actor, CONDUCT, "complete a checklist step")
    step = ChecklistStep.objects.select_related("window").get(pk=step.pk)
    if step.finished:
        raise MaintenanceError(f"“{step.title}” is already {step.get_status_display().lower()}.")
    if step.title == PREPARE_ROLLBACK and not step.window.rollback_plan.strip():
        raise MaintenanceError("Write the rollback plan on the window first, then tick this step.")
    if step.automatic and not note.strip():
        raise MaintenanceError(
            f"“{step.title}” runs by itself; to tick it by hand, say why (e.g. done outside "
            "the portal)."
        )
    step.status = StepStatus.DONE
    step.completed_at = timezone.now()
    step.completed_by = acting_user(actor)
    step.result = note.strip() or step.result
    step.save(update_fields=["status", "completed_at", "completed_by", "result"])
    audit_record(
        action=AuditAction.OPERATION,
        obj=step.window,
        message=f"Checklist: “{step.title}” done. {note}".strip(),
        actor=actor,
    )
    return step


def step_skip(*, step: ChecklistStep, actor: object | None = None, reason: str) -> ChecklistStep:
    _require(actor, CONDUCT, "skip a checklist step")
    if not reason.strip():
        raise MaintenanceError("Give a reason for skipping the step.")
    step = ChecklistStep.objects.select_related("window").get(pk=step.pk)
    if step.finished:
        raise MaintenanceError(f"“{step.title}” is already {step.get_status_display().lower()}.")
    step.status = StepStatus.SKIPPED
    step.completed_at = timezone.now()
    step.completed_by = acting_user(actor)
    step.result = f"Skipped: {reason.strip()}"
    step.save(update_fields=["status", "completed_at", "completed_by", "result"])
    audit_record(
        action=AuditAction.OPERATION,
        obj=step.window,
        message=f"Checklist: “{step.title}” skipped: {reason}",
        actor=actor,
    )
    return step


def step_request(*, step: ChecklistStep, actor: object | None = None) -> ChecklistStep:
    """Queue an automatic step (again, after a failure); a worker runs it."""
    _require(actor, CONDUCT, "run a checklist step")
    if not step.automatic:
        raise MaintenanceError(f"“{step.title}” is done by a person: tick it when it is done.")
    with transaction.atomic():
        claimed = job_claim(
            ChecklistStep,
            step.pk,
            from_status=[StepStatus.PENDING, StepStatus.FAILED],
            to_status=StepStatus.QUEUED,
            queued_at=timezone.now(),
            requested_by=acting_user(actor),
            started_at=None,
            result="",
        )
        step.refresh_from_db()
        if not claimed:
            raise MaintenanceError(
                f"“{step.title}” is already {step.get_status_display().lower()}."
            )
        audit_record(
            action=AuditAction.OPERATION,
            obj=step.window,
            outcome=AuditOutcome.REQUESTED,
            message=f"Checklist: “{step.title}” requested.",
            actor=actor,
        )
        _dispatch_step(step.pk)
    return step


def _dispatch_step(step_id: int) -> None:
    from maintenance.tasks import run_step

    enqueue_after_commit(run_step, step_id)


def _steps_queue(*, window: MaintenanceWindow, phase: str, actor: object | None) -> int:
    """Queue the phase's automatic steps that have not run (they run by themselves)."""
    steps = list(
        window.steps.filter(phase=phase, status=StepStatus.PENDING).exclude(
            action=StepAction.MANUAL
        )
    )
    now = timezone.now()
    for step in steps:
        if job_claim(
            ChecklistStep,
            step.pk,
            from_status=StepStatus.PENDING,
            to_status=StepStatus.QUEUED,
            queued_at=now,
            requested_by=acting_user(actor),
        ):
            _dispatch_step(step.pk)
    return len(steps)


def _step_finish(step: ChecklistStep, status: str, result: str) -> ChecklistStep:
    step.status = status
    step.result = result[:5000]
    step.completed_at = timezone.now() if status == StepStatus.DONE else None
    step.save(update_fields=["status", "result", "completed_at"])
    audit_record(
        action=AuditAction.OPERATION,
        obj=step.window,
        outcome=AuditOutcome.SUCCESS if status == StepStatus.DONE else AuditOutcome.FAILURE,
        message=f"Checklist: “{step.title}” {step.get_status_display().lower()}: {result[:500]}",
    )
    return step


def step_run(*, step_id: int) -> ChecklistStep | None:
    """The worker's part: claim the queued step and do it (None if someone else has it)."""
    if not job_claim(
        ChecklistStep,
        step_id,
        from_status=StepStatus.QUEUED,
        to_status=StepStatus.RUNNING,
        started_at=timezone.now(),
    ):
        return None
    step = ChecklistStep.objects.select_related("window").get(pk=step_id)
    runner = {
        StepAction.NOTIFY_USERS: _run_notify_users,
        StepAction.NOTIFY_COMPLETION: _run_notify_completion,
        StepAction.BACKUP_SYSTEMS: _run_backup_systems,
        StepAction.VERIFY_HEALTH: _run_verify_health,
    }[step.action]
    try:
        return runner(step)
    except Exception as exc:
        logger.exception("Checklist step %s failed", step_id)
        return _step_finish(step, StepStatus.FAILED, f"{type(exc).__name__}: {exc}")


def _run_notify_users(step: ChecklistStep) -> ChecklistStep:
    window = step.window
    previous = window.announcements.filter(kind=AnnouncementKind.LEAD).first()
    if previous:
        return _step_finish(
            step, StepStatus.DONE, f"Announced {_utc(previous.sent_at)}: {previous.subject}"
        )
    hours = max(0, int((window.starts_at - timezone.now()).total_seconds() // 3600))
    announcement = window_announce(window=window, kind=AnnouncementKind.LEAD, lead_hours=hours)
    if announcement is None:
        announcement = window.announcements.get(kind=AnnouncementKind.LEAD, lead_hours=hours)
    return _step_finish(
        step,
        StepStatus.DONE,
        f"Announcement sent to: {announcement.recipients.replace(chr(10), ', ') or 'nobody'}",
    )


def _run_notify_completion(step: ChecklistStep) -> ChecklistStep:
    window = step.window
    if window.status not in (WindowStatus.COMPLETED, WindowStatus.ROLLED_BACK):
        return _step_finish(
            step, StepStatus.FAILED, "The window is not finished yet: complete it first."
        )
    window_announce(window=window, kind=AnnouncementKind.COMPLETION)
    sent = window.announcements.get(kind=AnnouncementKind.COMPLETION, lead_hours=0)
    return _step_finish(step, StepStatus.DONE, f"Completion announced {_utc(sent.sent_at)}.")


def _run_backup_systems(step: ChecklistStep) -> ChecklistStep:
    from backups.services import backup_request
    from opsportal.systems.models import PostgresDatabase

    databases = list(
        PostgresDatabase.objects.filter(pk__in=step.window.systems.values("pk")).order_by("name")
    )
    if not databases:
        return _step_finish(
            step,
            StepStatus.DONE,
            "No PostgreSQL database among the affected systems: nothing to back up.",
        )
    backups = [
        backup_request(
            database=database,
            actor=step.requested_by,
            reason=f"Pre-maintenance backup for {step.window.title}",
            trigger="maintenance",
        )
        for database in databases
    ]
    step.status = StepStatus.WAITING
    step.backup_ids = [b.pk for b in backups]
    step.result = "Waiting for " + ", ".join(str(b) for b in backups)
    step.save(update_fields=["status", "backup_ids", "result"])
    _poll_backups_later(step.pk)
    return step


def _poll_backups_later(step_id: int) -> None:
    from maintenance.tasks import check_backups

    enqueue_after_commit(check_backups, step_id, countdown=BACKUP_POLL_SECONDS)


def step_check_backups(*, step_id: int, now: dt.datetime | None = None) -> ChecklistStep:
    """Has every backup the step asked for succeeded? Done, failed, or keep waiting."""
    from backups.selectors import backups_progress

    now = now or timezone.now()
    step = ChecklistStep.objects.select_related("window").get(pk=step_id)
    if step.status != StepStatus.WAITING:
        return step
    backups = backups_progress(backup_ids=step.backup_ids)
    failed = [b for b in backups if b.failed]
    if failed or len(backups) < len(step.backup_ids):
        reasons = "; ".join(f"{b.label}: {b.message or 'failed'}" for b in failed)
        return _step_finish(
            step, StepStatus.FAILED, f"Backup failed — {reasons or 'a backup vanished'}"
        )
    if all(b.succeeded for b in backups):
        return _step_finish(
            step,
            StepStatus.DONE,
            "Backed up: " + ", ".join(f"{b.label} ({b.size_bytes or 0} bytes)" for b in backups),
        )
    if step.started_at and now - step.started_at > BACKUP_WAIT_LIMIT:
        return _step_finish(
            step,
            StepStatus.FAILED,
            f"The backups did not finish within {BACKUP_WAIT_LIMIT}; see the backups page.",
        )
    _poll_backups_later(step.pk)
    return step


def _run_verify_health(step: ChecklistStep) -> ChecklistStep:
    """Runs /health/detailed's checks and probes the API; records what it found."""
    from opsportal.health.checks import OK, run_checks
    from opsportal.systems.adapters import http_endpoint
    from opsportal.systems.adapters.errors import AdapterError
    from opsportal.systems.models import HttpEndpoint

    window = step.window
    affected = list(window.systems.all())
    affected_names = {f"{s.kind}:{s.name}" for s in affected}
    outcomes = run_checks()
    failing = [o for o in outcomes if o.status != OK and (o.critical or o.name in affected_names)]
    lines = [f"{o.name}: {o.status} — {o.message}" for o in outcomes]
    endpoints = list(HttpEndpoint.objects.filter(pk__in=[s.pk for s in affected]))
    if not endpoints:
        # No API among the affected systems: probe every registered endpoint.
        endpoints = list(HttpEndpoint.objects.all())
    probe_failures = []
    for endpoint in endpoints:
        try:
            response = http_endpoint.request(endpoint)
        except AdapterError as exc:
            probe_failures.append(str(exc))
            lines.append(f"API probe {endpoint.name}: {exc}")
            continue
        ok = response.status == endpoint.expected_status
        line = f"API probe {endpoint.name}: HTTP {response.status} in {response.latency_ms:.0f} ms"
        lines.append(line)
        if not ok:
            probe_failures.append(f"{line}, expected {endpoint.expected_status}")
    if failing or probe_failures:
        summary = "Unhealthy: " + "; ".join(
            [f"{o.name} {o.status} ({o.message})" for o in failing] + probe_failures
        )
        return _step_finish(step, StepStatus.FAILED, summary + "\n\n" + "\n".join(lines))
    return _step_finish(step, StepStatus.DONE, "Healthy.\n\n" + "\n".join(lines))


def steps_prepare_due(*, now: dt.datetime | None = None) -> int:
    """Queue the pre-maintenance automatic steps of windows starting within the hour."""
    now = now or timezone.now()
    queued = 0
    for window in MaintenanceWindow.objects.filter(
        status__in=UPCOMING_STATUSES, starts_at__gt=now, starts_at__lte=now + PREPARE_LEAD
    ):
        queued += _steps_queue(window=window, phase=Phase.PRE, actor=None)
    return queued


def _step_time_limit(step: ChecklistStep) -> dt.timedelta:
    return STEP_TIME_LIMITS.get(step.action, dt.timedelta(minutes=5))


def _step_fail_dead(step: ChecklistStep, now: dt.datetime) -> bool:
    # A step has no finish time of its own: _step_finish records the outcome.
    if not job_finish(
        ChecklistStep,
        step.pk,
        from_status=StepStatus.RUNNING,
        to_status=StepStatus.FAILED,
        finished_field=None,
    ):
        return False
    _step_finish(
        step,
        StepStatus.FAILED,
        f"The worker did not finish within {int(_step_time_limit(step).total_seconds())} s "
        "(it may have died); run the step again.",
    )
    return True


# How the shared sweeper (opsportal.jobs) treats checklist steps; "waiting" steps (for
# backups) are the checklist's own state and are looked at by steps_sweep itself.
STEP_JOB = JobSpec(
    model=ChecklistStep,
    queued=StepStatus.QUEUED,
    running=StepStatus.RUNNING,
    dispatch=lambda step: _dispatch_step(step.pk),
    fail=_step_fail_dead,
    lost_after=UNDISPATCHED_AFTER,
    queued_field="queued_at",
    lost_lookup="lte",
    time_limit=_step_time_limit,
    select_related=("window",),
    batch=200,
)


def steps_sweep(*, now: dt.datetime | None = None) -> dict[str, int]:
    """Re-dispatch queued steps whose message was lost, fail steps whose worker died, and
    look again at steps waiting for backups."""
    now = now or timezone.now()
    swept = job_sweep(STEP_JOB, now=now)
    waiting = list(
        ChecklistStep.objects.filter(status=StepStatus.WAITING).values_list("pk", flat=True)
    )
    for pk in waiting:
        step_check_backups(step_id=pk, now=now)
    return {
        "redispatched": swept["redispatched"],
        "failed": swept["failed"],
        "waiting": len(waiting),
    }
