"""On-call shifts as people live them: "take this shift" (a colleague covers the rest of the
current turn, as an audited override) and each person's own shifts as an iCalendar feed."""

from __future__ import annotations

import datetime as dt
import secrets

import icalendar
from django.db import transaction
from django.utils import timezone

from opsportal.actors import acting_user
from opsportal.audit.models import AuditAction
from opsportal.audit.services import audit_record
from opsportal.people.models import (
    Contact,
    OnCallOverride,
    OnCallRotation,
    RotationMember,
    ShiftCalendar,
)
from opsportal.people.selectors import on_call_now
from opsportal.people.services import notify_destinations
from opsportal.refusals import ServiceRefused

TAKE_SHIFT_PERMISSION = "people.add_oncalloverride"
# How far ahead the feed lists shifts.
FEED_DAYS = 120


class ShiftRefused(ServiceRefused):
    """The shift cannot be taken (or the feed given); `message` says why."""


def turn_at(*, rotation: OnCallRotation, at: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """The regular turn in force at `at` (start, end)."""
    number = int((at - rotation.handoff_at) // rotation.shift)
    start = rotation.handoff_at + number * rotation.shift
    return start, start + rotation.shift


def shift_take(
    *, rotation: OnCallRotation, actor, now: dt.datetime | None = None
) -> OnCallOverride:
    """The acting person (a member of the rotation, not on call now) covers the rest of the
    current turn, or of the override in force: an override from now until then, audited,
    and both people told."""
    now = now or timezone.now()
    user = acting_user(actor)
    if user is None or not user.has_perm(TAKE_SHIFT_PERMISSION):
        raise ShiftRefused("You need the permission to record on-call overrides to take a shift.")
    taker = Contact.objects.filter(user=user, active=True).first()
    if (
        taker is None
        or not RotationMember.objects.filter(rotation=rotation, contact=taker).exists()
    ):
        raise ShiftRefused(
            f"Only a member of {rotation.name} can take its shift; {user.get_username()} is "
            "not one (a contact linked to your user must be in the rotation)."
        )
    with transaction.atomic():
        rotation = OnCallRotation.objects.select_for_update().get(pk=rotation.pk)
        covering = on_call_now(rotation=rotation, at=now)
        if covering is None:
            raise ShiftRefused(
                f"Nobody is on call for {rotation.name} now: there is no shift to take."
            )
        if covering.pk == taker.pk:
            raise ShiftRefused(f"You are already on call for {rotation.name}.")
        in_force = (
            OnCallOverride.objects.filter(
                rotation=rotation, contact=covering, starts_at__lte=now, ends_at__gt=now
            )
            .order_by("-starts_at")
            .first()
        )
        ends_at = in_force.ends_at if in_force else turn_at(rotation=rotation, at=now)[1]
        override = OnCallOverride.objects.create(
            rotation=rotation,
            contact=taker,
            starts_at=now,
            ends_at=ends_at,
            reason=f"{taker.name} took the shift over from {covering.name}",
        )
        audit_record(
            action=AuditAction.CREATE,
            obj=override,
            actor=user,
            message=f"{taker.name} took the {rotation.name} shift over from {covering.name} "
            f"until {ends_at:%Y-%m-%d %H:%M} UTC",
        )
        notify_destinations(
            emails=[covering.email, taker.email],
            subject=f"{taker.name} took over {covering.name}'s {rotation.name} shift until "
            f"{ends_at:%Y-%m-%d %H:%M} UTC",
            body=f"{taker.name} is on call for {rotation.name} from {now:%Y-%m-%d %H:%M} UTC "
            f"until {ends_at:%Y-%m-%d %H:%M} UTC, instead of {covering.name}.",
            about=override,
        )
    return override


# --- the feed ---------------------------------------------------------------------------


def shift_calendar_get(*, contact: Contact) -> ShiftCalendar:
    calendar, _ = ShiftCalendar.objects.get_or_create(contact=contact)
    return calendar


def shift_calendar_reset(*, contact: Contact, actor) -> ShiftCalendar:
    """A new secret link; the old one stops working (it was shared by mistake)."""
    calendar = shift_calendar_get(contact=contact)
    calendar.token = secrets.token_urlsafe()
    calendar.save(update_fields=["token"])
    audit_record(
        action=AuditAction.OPERATION,
        obj=calendar,
        actor=actor,
        message="Shift calendar link replaced; the previous link no longer works.",
    )
    return calendar


def shifts_of(
    *, contact: Contact, start: dt.datetime, end: dt.datetime
) -> list[tuple[OnCallRotation, dt.datetime, dt.datetime, str]]:
    """The contact's shifts overlapping [start, end): their regular turns in each rotation,
    minus the parts others cover by override, plus the overrides they cover."""
    shifts = []
    for membership in RotationMember.objects.filter(contact=contact).select_related("rotation"):
        rotation = membership.rotation
        members = [
            m.contact_id for m in rotation.memberships.select_related("contact") if m.contact.active
        ]
        if contact.pk not in members or not contact.active:
            continue
        others = list(
            OnCallOverride.objects.filter(
                rotation=rotation, starts_at__lt=end, ends_at__gt=start
            ).exclude(contact=contact)
        )
        turn_start = max(start, rotation.handoff_at)
        turn_start, _ = turn_at(rotation=rotation, at=turn_start)
        while turn_start < end:
            turn_end = turn_start + rotation.shift
            number = int((turn_start - rotation.handoff_at) // rotation.shift)
            if members[number % len(members)] == contact.pk:
                for piece in _minus(turn_start, turn_end, others):
                    shifts.append((rotation, *piece, "On call"))
            turn_start = turn_end
    for override in OnCallOverride.objects.filter(
        contact=contact, starts_at__lt=end, ends_at__gt=start
    ).select_related("rotation"):
        shifts.append((override.rotation, override.starts_at, override.ends_at, "Covering"))
    return sorted(shifts, key=lambda s: s[1])


def _minus(start, end, overrides) -> list[tuple[dt.datetime, dt.datetime]]:
    pieces = [(start, end)]
    for override in overrides:
        cut = []
        for a, b in pieces:
            if override.ends_at <= a or override.starts_at >= b:
                cut.append((a, b))
                continue
            if a < override.starts_at:
                cut.append((a, override.starts_at))
            if override.ends_at < b:
                cut.append((override.ends_at, b))
        pieces = cut
    return pieces


def shift_feed(*, contact: Contact, domain: str, now: dt.datetime | None = None) -> bytes:
    now = now or timezone.now()
    calendar = icalendar.Calendar()
    calendar.add("prodid", "-//OpsPortal//On-call shifts//EN")
    calendar.add("version", "2.0")
    calendar.add("method", "PUBLISH")
    calendar.add("x-wr-calname", f"On-call shifts of {contact.name}")
    calendar.add("x-published-ttl", "PT1H")
    start = now - dt.timedelta(days=7)
    for rotation, starts_at, ends_at, what in shifts_of(
        contact=contact, start=start, end=now + dt.timedelta(days=FEED_DAYS)
    ):
        event = icalendar.Event()
        # Stable per rotation and start, so an edited shift updates its event.
        event.add("uid", f"shift-{rotation.pk}-{contact.pk}-{int(starts_at.timestamp())}@{domain}")
        event.add("dtstamp", now.astimezone(dt.UTC))
        event.add("dtstart", starts_at.astimezone(dt.UTC))
        event.add("dtend", ends_at.astimezone(dt.UTC))
        event.add("summary", f"{what}: {rotation.name}")
        event.add(
            "description", f"{contact.name} is on call for {rotation.name} ({rotation.team})."
        )
        event.add("transp", "OPAQUE")
        calendar.add_component(event)
    return calendar.to_ical()
