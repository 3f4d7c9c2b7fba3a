"""Shifts as people live them: "Take this shift" from the overview (an audited override,
both people told), and each person's own shifts as an iCalendar feed behind a secret link."""

from __future__ import annotations

import datetime as dt

import icalendar
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client
from django.utils import timezone

from opsportal.access import groups_load_defaults
from opsportal.audit.models import AuditRecord
from opsportal.people.models import Notification, OnCallOverride
from opsportal.people.selectors import on_call_now
from opsportal.people.shifts import shift_calendar_get
from tests.people.conftest import contact
from tests.signin import TwoFactorClient

HOUR = dt.timedelta(hours=1)


@pytest.fixture
def alice_on_call_since_two_hours(rotation):
    """Alice's 12-hour turn started two hours ago; Bob is next."""
    rotation.handoff_at = timezone.now().replace(microsecond=0) - 2 * HOUR
    rotation.save()
    return rotation


def signed_in_as(name: str, group: str = "On-call engineers") -> TwoFactorClient:
    groups_load_defaults()
    user = get_user_model().objects.create_user(
        name.lower(), password="pw-shift-123!", is_staff=True
    )
    user.groups.add(Group.objects.get(name=group))
    person = contact(name) if name in ("Alice", "Bob", "Carol") else None
    if person is not None:
        person.user = user
        person.save()
    client = TwoFactorClient()
    client.force_login(user)
    return client


def test_a_colleague_takes_the_rest_of_the_turn_in_one_click(alice_on_call_since_two_hours):
    rotation = alice_on_call_since_two_hours
    bob = signed_in_as("Bob")
    overview = bob.get("/admin/").content.decode()
    assert 'value="Take this shift"' in overview

    response = bob.post(f"/admin/people/oncallrotation/{rotation.pk}/take-shift/", follow=True)
    assert "You are on call for Primary on-call until" in response.content.decode()
    override = OnCallOverride.objects.get()
    assert override.contact == contact("Bob")
    assert override.ends_at == rotation.handoff_at + 12 * HOUR  # the rest of Alice's turn
    assert on_call_now(rotation=rotation) == contact("Bob")
    record = AuditRecord.objects.get(message__contains="took the Primary on-call shift over")
    assert record.actor_name == "bob"
    told = Notification.objects.filter(subject__startswith="Bob took over Alice's")
    assert sorted(told.values_list("recipient", flat=True)) == [
        "alice@example.com",
        "bob@example.com",
    ]


def test_taking_a_shift_is_refused_for_who_is_on_call_outsiders_and_viewers(
    alice_on_call_since_two_hours,
):
    rotation = alice_on_call_since_two_hours
    url = f"/admin/people/oncallrotation/{rotation.pk}/take-shift/"
    cases = [
        (signed_in_as("Alice"), "You are already on call for Primary on-call"),
        (signed_in_as("Olga"), "Only a member of Primary on-call can take its shift"),
        (signed_in_as("Vera", "Viewers"), "You need the permission"),
    ]
    for client, refusal in cases:
        assert refusal in client.post(url, follow=True).content.decode()
    assert not OnCallOverride.objects.exists()
    assert on_call_now(rotation=rotation) == contact("Alice")


def events(body: bytes) -> list[tuple[str, dt.datetime, dt.datetime]]:
    calendar = icalendar.Calendar.from_ical(body)
    return [
        (str(e["summary"]), e.decoded("dtstart"), e.decoded("dtend"))
        for e in calendar.walk("VEVENT")
    ]


def test_each_person_sees_their_own_shifts_in_their_calendar(alice_on_call_since_two_hours):
    rotation = alice_on_call_since_two_hours
    start = rotation.handoff_at
    bob = signed_in_as("Bob")
    bob.post(f"/admin/people/oncallrotation/{rotation.pk}/take-shift/")
    # iCalendar times are to the second.
    taken_at = OnCallOverride.objects.get().starts_at.replace(microsecond=0)

    alice_feed = shift_calendar_get(contact=contact("Alice"))
    response = Client().get(f"/people/shifts/{alice_feed.token}.ics")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/calendar; charset=utf-8"
    alice = events(response.content)
    # Her turn until Bob took it, then every third turn (three people, 12 hours each).
    assert alice[0] == ("On call: Primary on-call", start, taken_at)
    assert alice[1] == ("On call: Primary on-call", start + 36 * HOUR, start + 48 * HOUR)

    page = bob.get("/admin/people/oncallrotation/my-shifts/").content.decode()
    assert "/people/shifts/" in page and "Covering" in page
    bob_feed = shift_calendar_get(contact=contact("Bob"))
    bob_events = events(Client().get(f"/people/shifts/{bob_feed.token}.ics").content)
    assert bob_events[0] == ("Covering: Primary on-call", taken_at, start + 12 * HOUR)
    assert bob_events[1] == ("On call: Primary on-call", start + 12 * HOUR, start + 24 * HOUR)

    # A leaked link is replaced; the old one stops working.
    bob.post("/admin/people/oncallrotation/my-shifts/")
    assert Client().get(f"/people/shifts/{bob_feed.token}.ics").status_code == 404
    assert Client().get("/people/shifts/no-such-token.ics").status_code == 404
