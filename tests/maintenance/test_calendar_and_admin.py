"""The .ics feed (parsed with a real iCalendar library), the month view, and the admin
workflow pages."""

import datetime as dt

import icalendar
import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from maintenance.models import CalendarSubscription, MaintenanceWindow, WindowStatus
from maintenance.selectors import windows_for_feed
from maintenance.services import (
    calendar_subscription_get,
    calendar_subscription_reset,
    window_cancel,
    window_finish,
    window_start,
    window_update,
)

pytestmark = pytest.mark.django_db


def feed_events(client, token):
    response = client.get(reverse("maintenance:calendar_feed", args=[token]))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/calendar")
    calendar = icalendar.Calendar.from_ical(response.content)
    return calendar, [c for c in calendar.walk() if c.name == "VEVENT"]


def test_the_feed_lists_upcoming_windows(client, schedule, superuser, redis_target):
    first = schedule(
        systems=[redis_target],
        title="Redis upgrade",
        starts_in=dt.timedelta(days=3),
        expected_impact="Cache cold for 5 min",
    )
    second = schedule(
        title="Kernel patches", starts_in=dt.timedelta(days=10), length=dt.timedelta(hours=2)
    )
    cancelled = schedule(title="Never mind", starts_in=dt.timedelta(days=4))
    window_cancel(window=cancelled, actor=superuser, reason="Not needed")
    finished = schedule(title="Done already", starts_in=dt.timedelta(0))
    window_start(window=finished, actor=superuser, override_reason="test")
    window_finish(window=finished, actor=superuser)
    token = calendar_subscription_get(user=superuser).token

    calendar, events = feed_events(client, token)
    assert str(calendar["version"]) == "2.0"
    # The finished window is gone; the cancelled one stays, marked so (see below).
    assert [str(e["summary"]) for e in events] == [
        "Maintenance: Redis upgrade",
        "Maintenance: Never mind",
        "Maintenance: Kernel patches",
    ]
    for event, window in zip(events, [first, cancelled, second], strict=True):
        assert event.decoded("dtstart") == window.starts_at.replace(microsecond=0)
        assert event.decoded("dtend") == window.ends_at.replace(microsecond=0)
        assert str(event["uid"]).startswith(f"maintenance-window-{window.pk}@")
    assert [str(e["status"]) for e in events] == ["CONFIRMED", "CANCELLED", "CONFIRMED"]
    assert [e.decoded("sequence") for e in events] == [0, 1, 0]
    assert "test-redis" in str(events[0]["description"])
    assert "Cache cold for 5 min" in str(events[0]["description"])


def test_a_cancelled_or_moved_window_is_a_new_version_of_its_event(client, schedule, superuser):
    """Calendar apps replace an event (same UID) only when its SEQUENCE grows, and remove
    it when the new version says STATUS:CANCELLED (RFC 5545 3.8.1.11, 3.8.7.4)."""
    window = schedule(title="Patch the API hosts", starts_in=dt.timedelta(days=5))
    token = calendar_subscription_get(user=superuser).token

    def the_event():
        _, events = feed_events(client, token)
        [event] = [
            e for e in events if str(e["uid"]).startswith(f"maintenance-window-{window.pk}@")
        ]
        return event

    before = the_event()
    assert (str(before["status"]), before.decoded("sequence")) == ("CONFIRMED", 0)

    window.starts_at += dt.timedelta(hours=3)
    window.ends_at += dt.timedelta(hours=3)
    window_update(window=window, actor=superuser)
    moved = the_event()
    assert moved.decoded("sequence") == 1
    assert moved.decoded("dtstart") == window.starts_at.replace(microsecond=0)
    assert str(moved["uid"]) == str(before["uid"])

    window.expected_impact = "None expected"  # not a new time: same version
    window_update(window=window, actor=superuser)
    assert the_event().decoded("sequence") == 1

    window_cancel(window=window, actor=superuser, reason="Vendor postponed the patch")
    gone = the_event()
    assert str(gone["status"]) == "CANCELLED"
    assert gone.decoded("sequence") == 2
    assert str(gone["uid"]) == str(before["uid"])

    # Once its time has passed it leaves the feed like any other window.
    assert window not in windows_for_feed(now=window.ends_at + dt.timedelta(minutes=1))


def test_the_feed_needs_a_valid_secret_link(client, schedule, superuser):
    schedule()
    old = calendar_subscription_get(user=superuser).token
    assert client.get(reverse("maintenance:calendar_feed", args=["guessed"])).status_code == 404
    new = calendar_subscription_reset(user=superuser).token
    assert new != old
    assert client.get(reverse("maintenance:calendar_feed", args=[old])).status_code == 404
    feed_events(client, new)
    # Someone who may not see windows gets nothing, even with a link.
    nobody = get_user_model().objects.create_user("gone", password="x-12345678!")
    link = CalendarSubscription.objects.create(user=nobody).token
    assert client.get(reverse("maintenance:calendar_feed", args=[link])).status_code == 404


def test_admin_add_refuses_end_before_start_and_warns_on_overlap(
    staff_client, schedule, redis_target
):
    existing = schedule(systems=[redis_target], starts_in=dt.timedelta(days=2))
    url = reverse("admin:maintenance_maintenancewindow_add")
    start = existing.starts_at + dt.timedelta(minutes=30)
    before = start - dt.timedelta(hours=1)
    form = {
        "title": "Overlapping",
        "kind": "ad_hoc",
        "starts_at_0": f"{start:%Y-%m-%d}",
        "starts_at_1": f"{start:%H:%M:%S}",
        "ends_at_0": f"{before:%Y-%m-%d}",
        "ends_at_1": f"{before:%H:%M:%S}",
        "systems": [redis_target.pk],
        "announce_lead_hours": "72,24",
        **{
            f"{prefix}-{k}": v
            for prefix in ("suppressed_alerts", "change_log", "announcements")
            for k, v in (("TOTAL_FORMS", "0"), ("INITIAL_FORMS", "0"))
        },
    }
    response = staff_client.post(url, form)
    assert response.status_code == 200
    assert "set the end after the start" in response.content.decode()
    end = start + dt.timedelta(hours=1)
    form.update({"ends_at_0": f"{end:%Y-%m-%d}", "ends_at_1": f"{end:%H:%M:%S}"})
    response = staff_client.post(url, form, follow=True)
    assert "overlaps on the same system(s) with" in response.content.decode()
    created = MaintenanceWindow.objects.get(title="Overlapping")
    assert created.steps.count() == 9
    assert [s.pk for s in created.systems.all()] == [redis_target.pk]


def test_admin_pages_render(staff_client, schedule, superuser):
    window = schedule(title="Visible in the month")
    page = staff_client.get(
        reverse("admin:maintenance_maintenancewindow_change", args=[window.pk])
    ).content.decode()
    assert "Back up systems" in page and "Start window" in page
    month = staff_client.get(
        reverse("admin:maintenance_maintenancewindow_month"), {"month": f"{window.starts_at:%Y-%m}"}
    ).content.decode()
    assert "Visible in the month" in month
    assert (
        staff_client.get(reverse("admin:maintenance_maintenancewindow_changelist")).status_code
        == 200
    )
    subscribe = staff_client.get(reverse("admin:maintenance_maintenancewindow_subscribe"))
    assert calendar_subscription_get(user=superuser).token in subscribe.content.decode()
    staff_client.post(
        reverse("admin:maintenance_maintenancewindow_subscribe"), {"time_zone": "Mars/Olympus"}
    )
    assert calendar_subscription_get(user=superuser).time_zone == "UTC"
    staff_client.post(
        reverse("admin:maintenance_maintenancewindow_subscribe"), {"time_zone": "Asia/Tokyo"}
    )
    page = staff_client.get(
        reverse("admin:maintenance_maintenancewindow_change", args=[window.pk])
    ).content.decode()
    assert "Asia/Tokyo" in page  # shown in the viewer's zone too


def test_admin_start_refused_then_started_with_a_reason(staff_client, schedule):
    window = schedule()
    url = reverse("admin:maintenance_maintenancewindow_action", args=[window.pk, "start"])
    page = staff_client.get(url).content.decode()
    assert "no rollback plan" in page
    staff_client.post(url, {"text": ""})
    window.refresh_from_db()
    assert window.status == WindowStatus.PLANNED
    staff_client.post(url, {"text": "Emergency: disk full"})
    window.refresh_from_db()
    assert window.status == WindowStatus.IN_PROGRESS
