import datetime as dt

from django.utils import timezone

from opsportal.people.models import Contact, OnCallOverride, OnCallRotation, Team


def on_call_now(*, rotation: OnCallRotation, at: dt.datetime | None = None) -> Contact | None:
    """Who covers the rotation at `at`: an override if one is in force, else the turn."""
    at = at or timezone.now()
    override = (
        OnCallOverride.objects.filter(rotation=rotation, starts_at__lte=at, ends_at__gt=at)
        .select_related("contact")
        .order_by("-starts_at")
        .first()
    )
    if override:
        return override.contact
    members = [
        m.contact for m in rotation.memberships.select_related("contact") if m.contact.active
    ]
    if not members or at < rotation.handoff_at:
        return None
    turn = int((at - rotation.handoff_at) // rotation.shift) % len(members)
    return members[turn]


def on_call_contacts(*, team: Team, at: dt.datetime | None = None) -> list[Contact]:
    contacts = []
    for rotation in team.rotations.all():
        contact = on_call_now(rotation=rotation, at=at)
        if contact and contact not in contacts:
            contacts.append(contact)
    return contacts


def on_call_overview(
    *, at: dt.datetime | None = None
) -> list[tuple[OnCallRotation, Contact | None]]:
    rotations = OnCallRotation.objects.select_related("team").order_by("name")
    return [(rotation, on_call_now(rotation=rotation, at=at)) for rotation in rotations]
