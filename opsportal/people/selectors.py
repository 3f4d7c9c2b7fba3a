import datetime as dt
from collections import defaultdict

from django.utils import timezone

from opsportal.people.models import Contact, OnCallOverride, OnCallRotation, RotationMember, Team


def on_call_by_rotation(
    *, rotations: list[OnCallRotation], at: dt.datetime | None = None
) -> dict[int, Contact | None]:
    """Who covers each rotation at `at` (rotation pk -> contact), in two queries however
    many rotations: a changelist or the overview lists them all."""
    at = at or timezone.now()
    ids = [rotation.pk for rotation in rotations]
    overriding: dict[int, Contact] = {}
    for override in (
        OnCallOverride.objects.filter(rotation_id__in=ids, starts_at__lte=at, ends_at__gt=at)
        .select_related("contact")
        .order_by("-starts_at")
    ):
        # The latest-starting override in force wins.
        overriding.setdefault(override.rotation_id, override.contact)
    members: dict[int, list[Contact]] = defaultdict(list)
    for membership in RotationMember.objects.filter(rotation_id__in=ids).select_related("contact"):
        if membership.contact.active:
            members[membership.rotation_id].append(membership.contact)
    return {
        rotation.pk: overriding.get(rotation.pk) or _turn(rotation, members[rotation.pk], at)
        for rotation in rotations
    }


def _turn(rotation: OnCallRotation, members: list[Contact], at: dt.datetime) -> Contact | None:
    if not members or at < rotation.handoff_at:
        return None
    # Whole seconds over whole-hour shifts, in integers: no timedelta is built from
    # shift_hours, so even a row saved before its bound cannot overflow (issue #17).
    elapsed = (at - rotation.handoff_at) // dt.timedelta(seconds=1)
    shift_seconds = max(1, rotation.shift_hours) * 3600
    return members[elapsed // shift_seconds % len(members)]


def on_call_now(*, rotation: OnCallRotation, at: dt.datetime | None = None) -> Contact | None:
    """Who covers the rotation at `at`: an override if one is in force, else the turn."""
    return on_call_by_rotation(rotations=[rotation], at=at)[rotation.pk]


def on_call_contacts(*, team: Team, at: dt.datetime | None = None) -> list[Contact]:
    contacts = []
    covering = on_call_by_rotation(rotations=list(team.rotations.all()), at=at)
    for contact in covering.values():
        if contact and contact not in contacts:
            contacts.append(contact)
    return contacts


def on_call_overview(
    *, at: dt.datetime | None = None
) -> list[tuple[OnCallRotation, Contact | None]]:
    rotations = list(OnCallRotation.objects.select_related("team").order_by("name"))
    covering = on_call_by_rotation(rotations=rotations, at=at)
    return [(rotation, covering[rotation.pk]) for rotation in rotations]
