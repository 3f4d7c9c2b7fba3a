"""Every state change of maintenance windows, their checklists and announcements, recurring
plans, and the recurring security tasks. Each writes its audit record."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterable

from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from maintenance import recurrence
from maintenance.models import (
    UPCOMING_STATUSES,
    Announcement,
    AnnouncementKind,
    CalendarSubscription,
    ChangeLogEntry,
    ChecklistStep,
    MaintenancePlan,
    MaintenanceWindow,
    OccurrenceStatus,
    Phase,
    RecurringTask,
    ScanStatus,
    StepAction,
    StepStatus,
    TaskKind,
    TaskOccurrence,
    WindowKind,
    WindowStatus,
)
from opsportal.audit.models import AuditAction, AuditOutcome
from opsportal.audit.services import audit_record
from opsportal.people.models import (
    Notification,
    NotificationChannelKind,
    Responsibility,
    WebhookChannel,
)
from opsportal.people.services import notify
from opsportal.queueing import enqueue_after_commit
from opsportal.schedules import periodic_task_ensure
from opsportal.systems.models import System

logger = logging.getLogger(__name__)

CONDUCT = "maintenance.conduct_maintenancewindow"
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
# A queued step whose message never reached a worker is sent again after this.
UNDISPATCHED_AFTER = dt.timedelta(seconds=60)
# Backups a window waits for (pg_dump of a large database takes a while).
BACKUP_WAIT_LIMIT = dt.timedelta(hours=6)
BACKUP_POLL_SECONDS = 3
# Pre-maintenance automatic steps run by themselves this long before the start.
PREPARE_LEAD = dt.timedelta(hours=1)
# Lead times longer than this are refused (announcing a month ahead is plenty).
MAX_LEAD_HOURS = 24 * 31
# Forms are filled in for a minute or two: a start this little in the past is "now".
PAST_GRACE = dt.timedelta(minutes=5)


class MaintenanceError(Exception):
    """A workflow step refused, with a message that says what to do."""


def _require(actor: object | None, permission: str, doing: str) -> None:
    # Workers and schedules act without a user; people need the permission.
    if actor is not None and getattr(actor, "pk", None) and not actor.has_perm(permission):
        raise PermissionDenied(f"You need the permission {permission!r} to {doing}.")


# The workflow actions on a window (its page's buttons): the permission each needs and what
# the refusal says it is for. The services check these; the admin checks them before showing
# an action's page too, so a role that may not act is refused on the page, not on its form.
WINDOW_ACTIONS: dict[str, tuple[str, str]] = {
    "start": (CONDUCT, "start a maintenance window"),
    "complete": (CONDUCT, "complete a maintenance window"),
    "rollback": (CONDUCT, "roll back a maintenance window"),
    "cancel": ("maintenance.change_maintenancewindow", "cancel a maintenance window"),
    "log": (CONDUCT, "document changes of a maintenance window"),
}


def window_action_require(*, action: str, actor: object | None) -> None:
    """Refuse (PermissionDenied, naming the permission) an actor who may not `action`."""
    _require(actor, *WINDOW_ACTIONS[action])


def _utc(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


# --- windows ----------------------------------------------------------------------------


def lead_hours_validate(*, value: str) -> None:
    """Lead times are whole hours, comma-separated (72,24). Checked here and not only in the
    admin form: a bad value saved any other way would stop every window's announcements at
    the next tick (the lead_hours property cannot read it)."""
    try:
        hours = [int(h) for h in (value or "").replace(" ", "").split(",") if h]
    except ValueError:
        raise ValidationError(
            {"announce_lead_hours": f"{value!r}: enter whole hours separated by commas: 72,24"}
        ) from None
    if any(h <= 0 or h > MAX_LEAD_HOURS for h in hours):
        raise ValidationError(
            {"announce_lead_hours": f"Each lead time must be between 1 and {MAX_LEAD_HOURS} hours."}
        )


def window_validate(
    *, window: MaintenanceWindow, now: dt.datetime | None = None, moving: bool = True
) -> None:
    """End before start, a zero-length window or one in the past: refused, saying what to fix.

    `moving` is False when the times did not change (editing a window that has started)."""
    now = now or timezone.now()
    lead_hours_validate(value=window.announce_lead_hours)
    errors: dict[str, str] = {}
    if window.starts_at and window.ends_at and window.ends_at <= window.starts_at:
        errors["ends_at"] = (
            f"The window ends ({_utc(window.ends_at)}) before or when it starts "
            f"({_utc(window.starts_at)}): set the end after the start."
        )
    elif moving and window.ends_at and window.ends_at <= now:
        errors["ends_at"] = (
            f"This window is in the past (it ends {_utc(window.ends_at)}): "
            "schedule it in the future."
        )
    elif moving and window.starts_at and window.starts_at < now - PAST_GRACE:
        errors["starts_at"] = (
            f"The start {_utc(window.starts_at)} is in the past: choose a start from now on."
        )
    if errors:
        raise ValidationError(errors)


def _checklist_create(window: MaintenanceWindow) -> None:
    ChecklistStep.objects.bulk_create(
        ChecklistStep(window=window, phase=phase, position=i, title=title, action=action)
        for i, (phase, title, action) in enumerate(RUNBOOK_CHECKLIST)
    )


@transaction.atomic
def window_schedule(
    *,
    window: MaintenanceWindow,
    systems: Iterable[System] = (),
    actor: object | None = None,
    now: dt.datetime | None = None,
) -> MaintenanceWindow:
    """Save a new window (its fields already set) with the runbook's checklist."""
    _require(actor, "maintenance.add_maintenancewindow", "schedule a maintenance window")
    window_validate(window=window, now=now)
    window.status = WindowStatus.PLANNED
    if window.owner_id is None and getattr(actor, "pk", None):
        window.owner = actor
    window.save()
    window.systems.set(list(systems))
    _checklist_create(window)
    return window


def window_change_validate(
    *, previous: MaintenanceWindow, starts_at: dt.datetime, ends_at: dt.datetime
) -> bool:
    """May the saved window `previous` get these times? Raises a ValidationError saying what
    to fix; returns whether the window moves. The admin form asks before saving."""
    moving = (previous.starts_at, previous.ends_at) != (starts_at, ends_at)
    only_end_moved = previous.status == WindowStatus.IN_PROGRESS and starts_at == previous.starts_at
    if previous.status not in UPCOMING_STATUSES and moving and not only_end_moved:
        raise ValidationError(
            {
                "starts_at": f"The window is {previous.get_status_display().lower()}: "
                "only the end of a window in progress can still change."
            }
        )
    probe = MaintenanceWindow(starts_at=starts_at, ends_at=ends_at)
    window_validate(window=probe, moving=moving and previous.status in UPCOMING_STATUSES)
    return moving


@transaction.atomic
def window_update(
    *,
    window: MaintenanceWindow,
    systems: Iterable[System] | None = None,
    actor: object | None = None,
) -> MaintenanceWindow:
    """Save edits; moving a generated occurrence keeps its place in the plan's rule."""
    _require(actor, "maintenance.change_maintenancewindow", "change a maintenance window")
    previous = MaintenanceWindow.objects.select_for_update().get(pk=window.pk)
    moving = window_change_validate(
        previous=previous, starts_at=window.starts_at, ends_at=window.ends_at
    )
    # State fields are only the services' to change.
    for name in ("status", "started_at", "finished_at", "suppress_from", "start_override_reason"):
        setattr(window, name, getattr(previous, name))
    window.suppress_until = previous.suppress_until
    if previous.status == WindowStatus.IN_PROGRESS:
        # An extended (or shortened) window suppresses alerts until its new end.
        window.suppress_until = window.ends_at
    # A moved window is a new version of the calendar event.
    window.sequence = previous.sequence + (1 if moving else 0)
    window.save()
    if systems is not None:
        window.systems.set(list(systems))
    return window


def window_start_blockers(*, window: MaintenanceWindow) -> list[str]:
    """What the runbook wants done before a window starts and is not yet."""
    blockers = []
    if not window.rollback_plan.strip():
        blockers.append("The window has no rollback plan.")
    unfinished = [s.title for s in window.steps.all() if s.phase == Phase.PRE and not s.finished]
    if unfinished:
        blockers.append("Pre-maintenance steps not done: " + ", ".join(unfinished) + ".")
    return blockers


def window_start(
    *,
    window: MaintenanceWindow,
    actor: object | None = None,
    override_reason: str = "",
    now: dt.datetime | None = None,
) -> MaintenanceWindow:
    """Start the window: from now until its end, alerts about its systems are suppressed."""
    window_action_require(action="start", actor=actor)
    now = now or timezone.now()
    override_reason = override_reason.strip()
    with transaction.atomic():
        window = MaintenanceWindow.objects.select_for_update().get(pk=window.pk)
        if window.status not in UPCOMING_STATUSES:
            raise MaintenanceError(
                f"The window is {window.get_status_display().lower()}; only a planned or "
                "announced window can start."
            )
        if window.ends_at <= now:
            raise MaintenanceError(
                f"The window's end ({_utc(window.ends_at)}) has passed: move its end first."
            )
        blockers = window_start_blockers(window=window)
        refused = bool(blockers and not override_reason)
        if not refused:
            _window_mark_started(
                window, now=now, override_reason=override_reason, blockers=blockers, actor=actor
            )
    if refused:
        # Recorded outside the transaction above, so the refusal itself stays audited.
        audit_record(
            action=AuditAction.OPERATION,
            obj=window,
            outcome=AuditOutcome.FAILURE,
            message="Start refused: " + " ".join(blockers),
            actor=actor,
        )
        raise MaintenanceError(
            " ".join(blockers) + " Complete them, or start anyway with a reason."
        )
    return window


def _window_mark_started(
    window: MaintenanceWindow,
    *,
    now: dt.datetime,
    override_reason: str,
    blockers: list[str],
    actor: object | None,
) -> None:
    window.status = WindowStatus.IN_PROGRESS
    window.started_at = now
    window.suppress_from = now
    window.suppress_until = window.ends_at
    window.start_override_reason = override_reason if blockers else ""
    window.save(
        update_fields=[
            "status",
            "started_at",
            "suppress_from",
            "suppress_until",
            "start_override_reason",
        ]
    )
    message = f"Started; alerts about its systems are suppressed until {_utc(window.ends_at)}."
    if blockers:
        message += f" Started despite: {' '.join(blockers)} Reason given: {override_reason}"
    audit_record(
        action=AuditAction.OPERATION,
        obj=window,
        message=message,
        changes={
            "status": [WindowStatus.PLANNED, WindowStatus.IN_PROGRESS],
            "override_reason": override_reason if blockers else "",
        },
        actor=actor,
    )
    window_announce(window=window, kind=AnnouncementKind.START)
    _steps_queue(window=window, phase=Phase.DURING, actor=actor)


def window_finish(
    *,
    window: MaintenanceWindow,
    actor: object | None = None,
    rolled_back: bool = False,
    note: str = "",
    now: dt.datetime | None = None,
) -> MaintenanceWindow:
    """End the window (completed, or rolled back): alerts are handled normally again."""
    window_action_require(action="rollback" if rolled_back else "complete", actor=actor)
    now = now or timezone.now()
    with transaction.atomic():
        window = MaintenanceWindow.objects.select_for_update().get(pk=window.pk)
        if window.status != WindowStatus.IN_PROGRESS:
            raise MaintenanceError(
                f"The window is {window.get_status_display().lower()}; only a window in "
                "progress can be completed or rolled back."
            )
        if rolled_back and not note.strip():
            raise MaintenanceError("Say what was rolled back and why.")
        status = WindowStatus.ROLLED_BACK if rolled_back else WindowStatus.COMPLETED
        window.status = status
        window.finished_at = now
        window.suppress_until = max(now, window.suppress_from)
        window.save(update_fields=["status", "finished_at", "suppress_until"])
        if note.strip():
            ChangeLogEntry.objects.create(
                window=window, author=_user(actor), text=f"{window.get_status_display()}: {note}"
            )
        audit_record(
            action=AuditAction.OPERATION,
            obj=window,
            message=f"{window.get_status_display()}. {note}".strip(),
            changes={"status": [WindowStatus.IN_PROGRESS, status]},
            actor=actor,
        )
        window_announce(window=window, kind=AnnouncementKind.COMPLETION)
        _steps_queue(window=window, phase=Phase.POST, actor=actor)
        window_release_alerts(window=window, now=now)
    return window


def window_release_alerts(
    *, window: MaintenanceWindow, now: dt.datetime | None = None
) -> list[int]:
    """Hand the alerts this window suppressed and that are still firing to incident handling.

    Alertmanager sends a firing alert again only after its repeat interval (hours), so
    without this an alert that kept firing through the window would page nobody until then.
    Runs once per window (alerts_released_at); returns the ids of the alerts received anew.
    """
    from incidents.models import Alert, AlertStatus
    from incidents.services import alert_receive

    now = now or timezone.now()
    with transaction.atomic():
        window = MaintenanceWindow.objects.select_for_update().get(pk=window.pk)
        if window.alerts_released_at is not None or window.suppress_until is None:
            return []
        if window.suppress_until > now:
            return []  # still suppressing
        window.alerts_released_at = now
        window.save(update_fields=["alerts_released_at"])
        released = []
        fingerprints = set(
            window.suppressed_alerts.filter(status=AlertStatus.FIRING).values_list(
                "fingerprint", flat=True
            )
        )
        for fingerprint in sorted(fingerprints):
            latest = (
                Alert.objects.filter(fingerprint=fingerprint)
                .order_by("-received_at", "-id")
                .first()
            )
            # Resolved since, or already handled (an incident, or another window): leave it.
            if latest.status != AlertStatus.FIRING or latest.suppressed_by_id != window.pk:
                continue
            again = alert_receive(
                fingerprint=latest.fingerprint,
                status=AlertStatus.FIRING,
                title=latest.title,
                severity=latest.severity,
                category=latest.category,
                systems=list(latest.systems.all()),
                evidence=latest.evidence,
                source=latest.source,
            )
            released.append(again.pk)
        audit_record(
            action=AuditAction.OPERATION,
            obj=window,
            message=(
                f"Suppression ended; {len(released)} alert(s) still firing handed to "
                "incident handling."
            ),
        )
    return released


def windows_release_alerts_due(*, now: dt.datetime | None = None) -> int:
    """Windows whose suppression has ended (completed, or past their planned end) and that
    suppressed alerts not yet handed over."""
    now = now or timezone.now()
    due = (
        MaintenanceWindow.objects.filter(
            alerts_released_at__isnull=True,
            suppress_until__lte=now,
            suppressed_alerts__isnull=False,
        )
        .distinct()
        .values_list("pk", flat=True)
    )
    count = 0
    for pk in list(due):
        window_release_alerts(window=MaintenanceWindow(pk=pk), now=now)
        count += 1
    return count


def window_cancel(
    *, window: MaintenanceWindow, actor: object | None = None, reason: str = ""
) -> MaintenanceWindow:
    """Cancel a planned window; for a generated one this skips the occurrence, and the
    plan's rule is untouched (regenerating does not bring it back)."""
    window_action_require(action="cancel", actor=actor)
    if not reason.strip():
        raise MaintenanceError("Give a reason for cancelling the window.")
    with transaction.atomic():
        window = MaintenanceWindow.objects.select_for_update().get(pk=window.pk)
        if window.status not in UPCOMING_STATUSES:
            raise MaintenanceError(
                f"The window is {window.get_status_display().lower()}; only a planned or "
                "announced window can be cancelled."
            )
        was_announced = window.announcements.exists()
        window.status = WindowStatus.CANCELLED
        window.finished_at = timezone.now()
        # Calendar apps replace the event only when its SEQUENCE grows.
        window.sequence += 1
        window.save(update_fields=["status", "finished_at", "sequence"])
        audit_record(
            action=AuditAction.OPERATION,
            obj=window,
            message=f"Cancelled: {reason}",
            changes={"status": ["planned", WindowStatus.CANCELLED]},
            actor=actor,
        )
        if was_announced:
            window_announce(window=window, kind=AnnouncementKind.CANCELLATION)
    return window


def window_log_change(
    *, window: MaintenanceWindow, text: str, actor: object | None = None
) -> ChangeLogEntry:
    """The runbook's "Document changes": one entry in the window's change log."""
    window_action_require(action="log", actor=actor)
    if not text.strip():
        raise MaintenanceError("Describe the change.")
    entry = ChangeLogEntry.objects.create(window=window, author=_user(actor), text=text.strip())
    audit_record(
        action=AuditAction.OPERATION,
        obj=window,
        message=f"Change documented: {text.strip()[:500]}",
        actor=actor,
    )
    return entry


def _user(actor: object | None):
    return actor if getattr(actor, "pk", None) else None


# --- announcements ----------------------------------------------------------------------


def _announcement_text(window: MaintenanceWindow, kind: str, lead_hours: int) -> tuple[str, str]:
    when = f"{_utc(window.starts_at)} to {_utc(window.ends_at)}"
    subject = {
        AnnouncementKind.LEAD: f"Planned maintenance: {window.title}, {_utc(window.starts_at)}",
        AnnouncementKind.START: f"Maintenance started: {window.title}",
        AnnouncementKind.COMPLETION: f"Maintenance {window.get_status_display().lower()}: "
        f"{window.title}",
        AnnouncementKind.CANCELLATION: f"Maintenance cancelled: {window.title}",
    }[kind]
    systems = ", ".join(s.name for s in window.systems.all()) or "none listed"
    lines = [
        f"{window.get_kind_display()}: {window.title}",
        f"When: {when}",
        f"Affected systems: {systems}",
        f"Expected impact: {window.expected_impact or 'not stated'}",
    ]
    if kind == AnnouncementKind.LEAD and lead_hours:
        lines.insert(0, f"Starts in about {lead_hours} h.")
    if kind == AnnouncementKind.COMPLETION and window.finished_at:
        lines.append(f"Finished: {_utc(window.finished_at)}")
    return subject[:255], "\n".join(lines)


def _notify_audience(
    *, emails: list[str], webhook: WebhookChannel | None, subject: str, body: str, about
) -> list[Notification]:
    """Notification rows for a window's own audience, delivered by the people worker."""
    from opsportal.people.tasks import deliver_notification

    about_fields = {
        "about_type": ContentType.objects.get_for_model(about),
        "about_id": str(about.pk),
    }
    rows = [
        Notification(
            channel=NotificationChannelKind.EMAIL,
            recipient=address,
            subject=subject,
            body=body,
            **about_fields,
        )
        for address in emails
    ]
    if webhook is not None and webhook.active:
        rows.append(
            Notification(
                channel=NotificationChannelKind.WEBHOOK,
                webhook=webhook,
                subject=subject,
                body=body,
                **about_fields,
            )
        )
    for row in rows:
        row.save()
        enqueue_after_commit(deliver_notification, row.pk)
    return rows


def window_announce(
    *, window: MaintenanceWindow, kind: str, lead_hours: int = 0
) -> Announcement | None:
    """Send one announcement (to DevOps and the window's audience) and record it; None if
    this one was already sent."""
    with transaction.atomic():
        subject, body = _announcement_text(window, kind, lead_hours)
        try:
            with transaction.atomic():
                announcement = Announcement.objects.create(
                    window=window, kind=kind, lead_hours=lead_hours, subject=subject
                )
        except IntegrityError:
            return None
        sent = notify(
            responsibility=Responsibility.DEVOPS, subject=subject, body=body, about=window
        )
        sent += _notify_audience(
            emails=window.email_list,
            webhook=window.webhook,
            subject=subject,
            body=body,
            about=window,
        )
        announcement.recipients = "\n".join(n.destination for n in sent)
        announcement.notification_ids = [n.pk for n in sent]
        announcement.save(update_fields=["recipients", "notification_ids"])
        if kind == AnnouncementKind.LEAD and window.status == WindowStatus.PLANNED:
            MaintenanceWindow.objects.filter(pk=window.pk, status=WindowStatus.PLANNED).update(
                status=WindowStatus.ANNOUNCED
            )
            window.status = WindowStatus.ANNOUNCED
        audit_record(
            action=AuditAction.OPERATION,
            obj=window,
            message=f"Announced ({announcement.get_kind_display().lower()}"
            + (f", {lead_hours} h ahead" if lead_hours else "")
            + f") to {len(sent)} destination(s).",
        )
    return announcement


def windows_announce_due(*, now: dt.datetime | None = None) -> int:
    """Send the lead-time announcements that are due (72 h and 24 h ahead by default)."""
    now = now or timezone.now()
    candidates = MaintenanceWindow.objects.filter(
        status__in=UPCOMING_STATUSES,
        starts_at__gt=now,
        starts_at__lte=now + dt.timedelta(hours=MAX_LEAD_HOURS),
    ).prefetch_related("announcements")
    sent = 0
    for window in candidates:
        done = {(a.kind, a.lead_hours) for a in window.announcements.all()}
        due = [h for h in window.lead_hours if window.starts_at - dt.timedelta(hours=h) <= now]
        # Only the nearest due lead time: a window scheduled 10 h ahead gets one announcement,
        # not a 72 h and a 24 h one at once.
        if (
            due
            and (AnnouncementKind.LEAD, min(due)) not in done
            and window_announce(window=window, kind=AnnouncementKind.LEAD, lead_hours=min(due))
        ):
            sent += 1
    return sent


# --- checklist --------------------------------------------------------------------------


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
    step.completed_by = _user(actor)
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
    step.completed_by = _user(actor)
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
        claimed = ChecklistStep.objects.filter(
            pk=step.pk, status__in=[StepStatus.PENDING, StepStatus.FAILED]
        ).update(
            status=StepStatus.QUEUED,
            queued_at=timezone.now(),
            requested_by=_user(actor),
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
        if ChecklistStep.objects.filter(pk=step.pk, status=StepStatus.PENDING).update(
            status=StepStatus.QUEUED, queued_at=now, requested_by=_user(actor)
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
    claimed = ChecklistStep.objects.filter(pk=step_id, status=StepStatus.QUEUED).update(
        status=StepStatus.RUNNING, started_at=timezone.now()
    )
    if not claimed:
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
    from backups.models import Backup, BackupStatus

    now = now or timezone.now()
    step = ChecklistStep.objects.select_related("window").get(pk=step_id)
    if step.status != StepStatus.WAITING:
        return step
    backups = list(Backup.objects.filter(pk__in=step.backup_ids).select_related("database"))
    failed = [b for b in backups if b.status == BackupStatus.FAILED]
    if failed or len(backups) < len(step.backup_ids):
        reasons = "; ".join(f"{b}: {b.message or 'failed'}" for b in failed) or "a backup vanished"
        return _step_finish(step, StepStatus.FAILED, f"Backup failed — {reasons}")
    if all(b.status == BackupStatus.SUCCEEDED for b in backups):
        return _step_finish(
            step,
            StepStatus.DONE,
            "Backed up: " + ", ".join(f"{b} ({b.size_bytes or 0} bytes)" for b in backups),
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


def steps_sweep(*, now: dt.datetime | None = None) -> dict[str, int]:
    """Re-dispatch queued steps whose message was lost, fail steps whose worker died, and
    look again at steps waiting for backups."""
    now = now or timezone.now()
    stuck = list(
        ChecklistStep.objects.filter(
            status=StepStatus.QUEUED, queued_at__lte=now - UNDISPATCHED_AFTER
        ).values_list("pk", flat=True)[:200]
    )
    for pk in stuck:
        _dispatch_step(pk)
    died = 0
    for step in ChecklistStep.objects.filter(status=StepStatus.RUNNING).select_related("window"):
        limit = STEP_TIME_LIMITS.get(step.action, dt.timedelta(minutes=5))
        overdue = step.started_at and now - step.started_at > limit
        if overdue and ChecklistStep.objects.filter(pk=step.pk, status=StepStatus.RUNNING).update(
            status=StepStatus.FAILED
        ):
            _step_finish(
                step,
                StepStatus.FAILED,
                f"The worker did not finish within {int(limit.total_seconds())} s "
                "(it may have died); run the step again.",
            )
            died += 1
    waiting = list(
        ChecklistStep.objects.filter(status=StepStatus.WAITING).values_list("pk", flat=True)
    )
    for pk in waiting:
        step_check_backups(step_id=pk, now=now)
    return {"redispatched": len(stuck), "failed": died, "waiting": len(waiting)}


# --- recurring plans --------------------------------------------------------------------


def plan_validate(*, plan: MaintenancePlan):
    lead_hours_validate(value=plan.announce_lead_hours)
    return recurrence.validate_plan(
        rrule=plan.rrule,
        first_start=plan.first_start,
        time_zone=plan.time_zone,
        duration=dt.timedelta(minutes=plan.duration_minutes or 0),
    )


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
    horizon = now + dt.timedelta(days=plan.generate_ahead_days)
    wanted = plan_occurrences(plan=plan, start=now, end=horizon)
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


# --- calendar ---------------------------------------------------------------------------


def calendar_subscription_get(*, user) -> CalendarSubscription:
    subscription, _ = CalendarSubscription.objects.get_or_create(user=user)
    return subscription


def calendar_subscription_reset(*, user) -> CalendarSubscription:
    """A new secret link; the old one stops working (e.g. it was shared by mistake)."""
    import secrets

    subscription = calendar_subscription_get(user=user)
    subscription.token = secrets.token_urlsafe()
    subscription.save(update_fields=["token"])
    audit_record(
        action=AuditAction.OPERATION,
        obj=subscription,
        message="Calendar feed link replaced; the previous link no longer works.",
        actor=user,
    )
    return subscription


def calendar_time_zone_set(*, user, time_zone: str) -> CalendarSubscription:
    recurrence.zone(time_zone)
    subscription = calendar_subscription_get(user=user)
    subscription.time_zone = time_zone
    subscription.save(update_fields=["time_zone"])
    return subscription


# --- defaults ---------------------------------------------------------------------------

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


def maintenance_load_defaults() -> None:
    for values in RUNBOOK_PLANS:
        if not MaintenancePlan.objects.filter(name=values["name"]).exists():
            plan = MaintenancePlan(**values)
            plan_validate(plan=plan)
            plan.save()
    security_tasks_load_defaults()
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


# --- recurring security and maintenance tasks -------------------------------------------

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
    """Due dates from the task's rule, from the last week up to `generate_ahead_days`."""
    if not task.active:
        return []
    now = now or timezone.now()
    rule = recurrence.parse_rule(task.rrule, first_start=task.first_due, time_zone=task.time_zone)
    start = max(task.first_due, now - dt.timedelta(days=7))
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
        occurrence.completed_by = _user(actor)
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

    claimed = TaskOccurrence.objects.filter(pk=occurrence_id, scan_status=ScanStatus.QUEUED).update(
        scan_status=ScanStatus.RUNNING, scan_started_at=timezone.now()
    )
    if not claimed:
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


def security_scans_sweep(*, now: dt.datetime | None = None) -> int:
    now = now or timezone.now()
    for pk in TaskOccurrence.objects.filter(
        scan_status=ScanStatus.QUEUED, scan_queued_at__lte=now - UNDISPATCHED_AFTER
    ).values_list("pk", flat=True):
        _dispatch_scan(pk)
    return TaskOccurrence.objects.filter(
        scan_status=ScanStatus.RUNNING, scan_started_at__lte=now - SCAN_TIME_LIMIT
    ).update(
        scan_status=ScanStatus.FAILED,
        findings={"error": "The worker did not finish the scan in time (it may have died)."},
    )


def security_tasks_load_defaults() -> None:
    from opsportal.people.models import Team

    team = Team.objects.filter(responsibility=Responsibility.SECURITY).first()
    if team is None:
        return
    for values in RUNBOOK_TASKS:
        if not RecurringTask.objects.filter(name=values["name"]).exists():
            RecurringTask.objects.create(team=team, **values)


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
