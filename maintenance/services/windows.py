"""A maintenance window's lifecycle: validate, schedule, change, start, complete or roll
back, cancel, document changes, hand suppressed alerts back; and which permission each of
the window's actions needs. Each writes its audit record."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from maintenance.models import (
    UPCOMING_STATUSES,
    AnnouncementKind,
    ChangeLogEntry,
    MaintenanceWindow,
    Phase,
    WindowStatus,
)
from maintenance.public import public_window_moved
from maintenance.services._common import (
    CONDUCT,
    MAX_LEAD_HOURS,
    MaintenanceError,
    _bounded,
    _require,
    _utc,
)
from maintenance.services.announcements import window_announce
from maintenance.services.checklists import _checklist_create, _steps_queue
from opsportal.actors import acting_user
from opsportal.audit.models import AuditAction, AuditOutcome
from opsportal.audit.services import audit_record
from opsportal.statuspage.services import status_refresh_soon
from opsportal.systems.models import System
from opsportal.validators import NOTE_MAX_LENGTH, REASON_MAX_LENGTH

# Forms are filled in for a minute or two: a start this little in the past is "now".
PAST_GRACE = dt.timedelta(minutes=5)


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
    if window.owner_id is None and acting_user(actor) is not None:
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
    if moving and window.status in UPCOMING_STATUSES:
        public_window_moved(window=window)
    else:
        status_refresh_soon()
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
    override_reason = _bounded(
        override_reason, max_length=REASON_MAX_LENGTH, what="reason for starting anyway"
    ).strip()
    with transaction.atomic():
        window = MaintenanceWindow.objects.select_for_update().get(pk=window.pk)
        if window.status not in UPCOMING_STATUSES:
            raise MaintenanceError(
                f"The window is {window.get_status_display().lower()}; only a planned or "
                "announced window can start."
            )
        early = dt.timedelta(minutes=settings.MAINTENANCE_EARLY_START_MINUTES)
        if window.starts_at - now > early:
            # Announcements and calendars told people the planned time; starting far earlier
            # would suppress alerts and take systems down while nobody expects it.
            raise MaintenanceError(
                f"The window is planned to start at {_utc(window.starts_at)}; it can be "
                f"started at most {settings.MAINTENANCE_EARLY_START_MINUTES} minutes before "
                "that (MAINTENANCE_EARLY_START_MINUTES). Move its start first."
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
    note = _bounded(note, max_length=NOTE_MAX_LENGTH, what="note")
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
                window=window,
                author=acting_user(actor),
                text=f"{window.get_status_display()}: {note}",
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
    from incidents.services import alerts_release_held

    now = now or timezone.now()
    with transaction.atomic():
        window = MaintenanceWindow.objects.select_for_update().get(pk=window.pk)
        if window.alerts_released_at is not None or window.suppress_until is None:
            return []
        if window.suppress_until > now:
            return []  # still suppressing
        window.alerts_released_at = now
        window.save(update_fields=["alerts_released_at"])
        released = alerts_release_held(window=window)
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
    reason = _bounded(reason, max_length=REASON_MAX_LENGTH, what="reason")
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
    text = _bounded(text, max_length=NOTE_MAX_LENGTH, what="change description")
    if not text.strip():
        raise MaintenanceError("Describe the change.")
    entry = ChangeLogEntry.objects.create(
        window=window, author=acting_user(actor), text=text.strip()
    )
    audit_record(
        action=AuditAction.OPERATION,
        obj=window,
        message=f"Change documented: {text.strip()[:500]}",
        actor=actor,
    )
    return entry
