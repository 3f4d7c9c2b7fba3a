"""Who is on call now: rotation turns, overrides, and the edges between them."""

import datetime as dt

import pytest

from opsportal.people.models import Contact, OnCallOverride, OnCallRotation
from opsportal.people.selectors import on_call_contacts, on_call_now, on_call_overview
from tests.people.conftest import HANDOFF, contact

HOUR = dt.timedelta(hours=1)


@pytest.mark.parametrize(
    ("hours_after_handoff", "expected"),
    [
        (0, "Alice"),  # the first shift starts exactly at the hand-off
        (11.99, "Alice"),
        (12, "Bob"),
        (23, "Bob"),
        (24, "Carol"),
        (36, "Alice"),  # the turn wraps around
        (12 * 3 * 10 + 13, "Bob"),  # ten full cycles later
    ],
)
def test_members_take_turns_one_shift_each(rotation, hours_after_handoff, expected):
    at = HANDOFF + dt.timedelta(hours=hours_after_handoff)
    assert on_call_now(rotation=rotation, at=at).name == expected


def test_nobody_is_on_call_before_the_first_handoff(rotation):
    assert on_call_now(rotation=rotation, at=HANDOFF - dt.timedelta(seconds=1)) is None


def test_a_rotation_without_members_has_nobody_on_call(on_call_team):
    empty = OnCallRotation.objects.create(
        name="Empty", team=on_call_team, shift_hours=24, handoff_at=HANDOFF
    )
    assert on_call_now(rotation=empty, at=HANDOFF + HOUR) is None


def test_inactive_members_are_skipped(rotation):
    Contact.objects.filter(name="Bob").update(active=False)
    # Two active members now: Alice, Carol, Alice, …
    assert on_call_now(rotation=rotation, at=HANDOFF + 13 * HOUR).name == "Carol"
    assert on_call_now(rotation=rotation, at=HANDOFF + 25 * HOUR).name == "Alice"


def test_an_override_covers_its_window_only(rotation):
    dave = Contact.objects.create(name="Dave", team=rotation.team, email="dave@example.com")
    starts = HANDOFF + 2 * HOUR
    OnCallOverride.objects.create(
        rotation=rotation, contact=dave, starts_at=starts, ends_at=starts + 4 * HOUR
    )
    assert on_call_now(rotation=rotation, at=starts - dt.timedelta(seconds=1)).name == "Alice"
    assert on_call_now(rotation=rotation, at=starts).name == "Dave"
    assert on_call_now(rotation=rotation, at=starts + 3 * HOUR).name == "Dave"
    # The end is exclusive: the rotation's turn is back at the override's end.
    assert on_call_now(rotation=rotation, at=starts + 4 * HOUR).name == "Alice"


def test_the_latest_starting_override_wins_where_two_overlap(rotation):
    OnCallOverride.objects.create(
        rotation=rotation,
        contact=contact("Carol"),
        starts_at=HANDOFF,
        ends_at=HANDOFF + 48 * HOUR,
        reason="holiday swap",
    )
    OnCallOverride.objects.create(
        rotation=rotation,
        contact=contact("Bob"),
        starts_at=HANDOFF + 5 * HOUR,
        ends_at=HANDOFF + 6 * HOUR,
    )
    assert on_call_now(rotation=rotation, at=HANDOFF + 1 * HOUR).name == "Carol"
    assert on_call_now(rotation=rotation, at=HANDOFF + 5.5 * HOUR).name == "Bob"
    assert on_call_now(rotation=rotation, at=HANDOFF + 7 * HOUR).name == "Carol"


def test_an_override_of_another_rotation_does_not_apply(rotation):
    other = OnCallRotation.objects.create(
        name="Secondary", team=rotation.team, shift_hours=12, handoff_at=HANDOFF
    )
    OnCallOverride.objects.create(
        rotation=other, contact=contact("Carol"), starts_at=HANDOFF, ends_at=HANDOFF + 10 * HOUR
    )
    assert on_call_now(rotation=rotation, at=HANDOFF + HOUR).name == "Alice"


def test_on_call_contacts_lists_each_rotations_person_once(rotation):
    secondary = OnCallRotation.objects.create(
        name="Secondary", team=rotation.team, shift_hours=24, handoff_at=HANDOFF
    )
    # Carol covers both rotations at the same time: she is paged once.
    OnCallOverride.objects.create(
        rotation=secondary,
        contact=contact("Carol"),
        starts_at=HANDOFF,
        ends_at=HANDOFF + 100 * HOUR,
    )
    at = HANDOFF + 25 * HOUR
    assert [c.name for c in on_call_contacts(team=rotation.team, at=at)] == ["Carol"]
    assert [(r.name, c.name) for r, c in on_call_overview(at=HANDOFF + HOUR)] == [
        ("Primary on-call", "Alice"),
        ("Secondary", "Carol"),
    ]


def test_on_call_now_defaults_to_the_current_time(rotation):
    from django.utils import timezone

    rotation.handoff_at = timezone.now() - 13 * HOUR  # Alice's shift ended an hour ago
    rotation.save()
    assert on_call_now(rotation=rotation).name == "Bob"
