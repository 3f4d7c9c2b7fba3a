"""Issue #17, maintenance: malformed or oversized input gets a clear answer (a form error, a
message) and changes nothing; never a server error, never a runaway generation."""

import datetime as dt

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import timezone

from maintenance.models import (
    MAX_GENERATE_AHEAD_DAYS,
    MAX_WINDOWS_AT_ONCE,
    ChangeLogEntry,
    ChecklistStep,
    MaintenancePlan,
    MaintenanceWindow,
    RecurringTask,
    TaskOccurrence,
    WindowStatus,
)
from maintenance.services import calendar_subscription_get
from tests.maintenance.test_plan_and_task_admin import (
    PLAN_ADD,
    TASK_ADD,
    errors_of,
    plan_form,
    split,
    task_form,
)

pytestmark = pytest.mark.django_db
UTC = dt.UTC


def said(response) -> str:
    return " ".join(str(m) for m in get_messages(response.wsgi_request))


@pytest.mark.parametrize(
    "month", ["9999-12", "1-1", "0001-01", "2026-13", "\uff12\uff10\uff12\uff16-01", "9" * 5000]
)
def test_month_view_out_of_range_shows_this_month_and_says_why(staff_client, month):
    url = reverse("admin:maintenance_maintenancewindow_month")
    response = staff_client.get(url, {"month": month})
    assert response.status_code == 200
    assert f"{timezone.now():%B %Y}" in response.content.decode()
    assert "must be YYYY-MM" in said(response)


def test_month_view_at_the_edges_of_its_range_renders(staff_client):
    url = reverse("admin:maintenance_maintenancewindow_month")
    for month in ("1900-01", "9998-12"):
        assert staff_client.get(url, {"month": month}).status_code == 200


@pytest.mark.parametrize(
    ("changes", "field", "says"),
    [
        (split("first_start", dt.datetime(9999, 12, 31, 2, 0, tzinfo=UTC)), "first_start", "2199"),
        ({"duration_minutes": "99999999999"}, "duration_minutes", "less than or equal"),
        ({"duration_minutes": "20000"}, "duration_minutes", "less than or equal"),
        ({"generate_ahead_days": "99999999999"}, "generate_ahead_days", "less than or equal"),
        ({"generate_ahead_days": "99999"}, "generate_ahead_days", "less than or equal"),
        ({"generate_ahead_days": "0"}, "generate_ahead_days", "greater than or equal"),
        (
            {"rrule": "FREQ=DAILY", "duration_minutes": "60", "generate_ahead_days": "400"},
            "generate_ahead_days",
            f"at most {MAX_WINDOWS_AT_ONCE} at once",
        ),
        ({"time_zone": "A" * 10_000}, "time_zone", "at most 64"),
        ({"time_zone": "../../etc/passwd"}, "time_zone", "does not exist"),
        ({"expected_impact": "x" * 10_001}, "expected_impact", "at most 10000"),
    ],
)
def test_plan_form_refuses_out_of_bounds_values(staff_client, changes, field, says):
    response = staff_client.post(reverse(PLAN_ADD), plan_form(**changes))
    errors = errors_of(response)
    assert says in " ".join(errors.get(field, [])), errors
    assert not MaintenancePlan.objects.exists()
    assert not MaintenanceWindow.objects.exists()


def test_plan_bounds_are_stated_in_the_help_text(staff_client):
    page = staff_client.get(reverse(PLAN_ADD)).content.decode()
    assert f"1 to {MAX_GENERATE_AHEAD_DAYS} days" in page
    assert f"at most {MAX_WINDOWS_AT_ONCE} windows" in page
    assert "1 to 10080 minutes" in page
    assert "Between 2000 and 2199." in page


def test_a_plan_saved_before_the_bounds_generates_at_most_the_cap(superuser):
    from maintenance.services import plan_generate_windows

    plan = MaintenancePlan.objects.create(
        name="Daily, from before the bound",
        rrule="FREQ=DAILY",
        first_start=timezone.now(),
        duration_minutes=30,
        generate_ahead_days=99_999,
    )
    created = plan_generate_windows(plan=plan)
    assert len(created) == MAX_WINDOWS_AT_ONCE
    assert ChecklistStep.objects.filter(window__plan=plan).count() < MAX_WINDOWS_AT_ONCE * 20


@pytest.mark.parametrize(
    ("changes", "field", "says"),
    [
        (split("first_due", dt.datetime(9999, 12, 31, 9, 0, tzinfo=UTC)), "first_due", "2199"),
        ({"generate_ahead_days": "99999999999"}, "generate_ahead_days", "less than or equal"),
        ({"generate_ahead_days": "401"}, "generate_ahead_days", "less than or equal"),
        (
            {"rrule": "FREQ=DAILY;BYHOUR=1,13", "generate_ahead_days": "400"},
            "generate_ahead_days",
            "at most 400 at once",
        ),
        ({"time_zone": "Mars/Olympus"}, "time_zone", "does not exist"),
    ],
)
def test_task_form_refuses_out_of_bounds_values(staff_client, devops_team, changes, field, says):
    response = staff_client.post(reverse(TASK_ADD), task_form(devops_team, **changes))
    errors = errors_of(response)
    assert says in " ".join(errors.get(field, [])), errors
    assert not RecurringTask.objects.exists()
    assert not TaskOccurrence.objects.exists()


def test_a_ten_thousand_character_time_zone_is_refused_with_a_message(staff_client, superuser):
    url = reverse("admin:maintenance_maintenancewindow_subscribe")
    response = staff_client.post(url, {"time_zone": "Europe/" + "x" * 10_000})
    assert response.status_code == 302
    assert "does not exist" in said(response)
    assert calendar_subscription_get(user=superuser).time_zone == "UTC"


def test_a_window_weeks_ahead_cannot_be_started_now_even_with_a_reason(staff_client, schedule):
    window = schedule(starts_in=dt.timedelta(days=21))
    url = reverse("admin:maintenance_maintenancewindow_action", args=[window.pk, "start"])
    response = staff_client.post(url, {"text": "Let's get it over with"})
    window.refresh_from_db()
    assert window.status == WindowStatus.PLANNED
    assert "at most 240 minutes before" in said(response)


def test_an_over_long_reason_is_refused_and_changes_nothing(staff_client, schedule):
    window = schedule(starts_in=dt.timedelta(minutes=10))
    url = reverse("admin:maintenance_maintenancewindow_action", args=[window.pk, "start"])
    response = staff_client.post(url, {"text": "x" * 10_000})
    window.refresh_from_db()
    assert window.status == WindowStatus.PLANNED
    assert window.start_override_reason == ""
    assert "at most 1,000" in said(response)
    log = reverse("admin:maintenance_maintenancewindow_action", args=[window.pk, "log"])
    response = staff_client.post(log, {"text": "y" * 10_001})
    assert "at most 10,000" in said(response)
    assert not ChangeLogEntry.objects.filter(window=window).exists()


@pytest.mark.parametrize(
    "path",
    [
        "abc/do/log/",
        "99999999999999999999999/do/log/",
        "abc/steps/1/done/",
        "1/steps/99999999999999999999999/done/",
    ],
)
def test_malformed_window_ids_are_not_found(staff_client, path):
    base = reverse("admin:maintenance_maintenancewindow_changelist")
    response = staff_client.post(base + path, {"text": "x"})
    assert response.status_code in (302, 404)


@pytest.mark.parametrize("object_id", ["abc", "99999999999999999999999"])
def test_malformed_occurrence_ids_are_not_found(staff_client, object_id):
    base = reverse("admin:maintenance_taskoccurrence_changelist")
    response = staff_client.post(f"{base}{object_id}/scan/")
    assert response.status_code in (302, 404)
