"""The plan and recurring-task admins (through the test client, as a person uses them):
bad rules are form errors that say what to fix, saving a plan generates its windows ahead,
an occurrence is moved or skipped without touching the rule; the occurrence page's
"Run automatic scan" button."""

import datetime as dt
import time

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from maintenance import tasks
from maintenance.models import (
    MaintenancePlan,
    RecurringTask,
    ScanStatus,
    TaskKind,
    TaskOccurrence,
    WindowStatus,
)
from maintenance.services import plan_generate_windows
from opsportal.audit.models import AuditOutcome, AuditRecord
from opsportal.people.models import Responsibility, Team

pytestmark = pytest.mark.django_db

UTC = dt.UTC
PLAN_ADD = "admin:maintenance_maintenanceplan_add"
TASK_ADD = "admin:maintenance_recurringtask_add"
WINDOW_INLINES = ("suppressed_alerts", "change_log", "announcements")


def split(name: str, value: dt.datetime) -> dict[str, str]:
    """The admin's date and time inputs for one datetime field."""
    value = value.astimezone(UTC)
    return {f"{name}_0": f"{value:%Y-%m-%d}", f"{name}_1": f"{value:%H:%M:%S}"}


def plan_form(**changes) -> dict:
    form = {
        "name": "Monthly maintenance",
        "kind": "monthly",
        "rrule": "FREQ=MONTHLY;BYDAY=SA;BYSETPOS=3",
        **split("first_start", dt.datetime(2026, 1, 17, 2, 0, tzinfo=UTC)),
        "time_zone": "UTC",
        "duration_minutes": "120",
        "expected_impact": "Short interruptions while services restart.",
        "rollback_plan": "Restore the pre-maintenance backup.",
        "owner": "",
        "emails": "users@example.com",
        "webhook": "",
        "announce_lead_hours": "72,24",
        "generate_ahead_days": "183",
        "active": "on",
    }
    form.update(changes)
    return form


def errors_of(response) -> dict[str, list[str]]:
    assert response.status_code == 200, response.status_code  # the form again, not 403
    form = response.context["adminform"].form
    return {field: list(errors) for field, errors in form.errors.items()}


@pytest.mark.parametrize(
    ("changes", "field", "says"),
    [
        ({"rrule": "FREQ=FORTNIGHTLY"}, "rrule", "cannot be read"),
        ({"rrule": "BYDAY=SA"}, "rrule", "needs a FREQ"),
        ({"rrule": "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30"}, "rrule", "no occurrence"),
        ({"rrule": "FREQ=SECONDLY"}, "rrule", "Use FREQ=YEARLY, MONTHLY, WEEKLY or DAILY"),
        ({"rrule": "FREQ=MONTHLY;INTERVAL=0"}, "rrule", "INTERVAL must be"),
        (
            {"rrule": "FREQ=DAILY;BYHOUR=0,4,8,12,16,20", "duration_minutes": "60"},
            "rrule",
            "more than 4000 times",
        ),
        ({"time_zone": "Europe/Atlantis"}, "time_zone", "does not exist"),
        ({"rrule": "FREQ=DAILY", "duration_minutes": "1500"}, "duration_minutes", "overlap"),
        ({"duration_minutes": "0"}, "duration_minutes", "at least one minute"),
        ({"announce_lead_hours": "soon"}, "announce_lead_hours", "whole hours"),
    ],
)
def test_plan_admin_shows_a_bad_plan_as_a_form_error(staff_client, changes, field, says):
    started = time.monotonic()
    response = staff_client.post(reverse(PLAN_ADD), plan_form(**changes))
    errors = errors_of(response)
    assert says in " ".join(errors[field]), errors
    assert says in response.content.decode()  # shown on the page, next to the field
    assert not MaintenancePlan.objects.exists()
    assert time.monotonic() - started < 10  # refused, not enumerated for minutes


def test_plan_admin_generates_windows_and_an_occurrence_moves_or_is_skipped(
    staff_client, redis_target
):
    response = staff_client.post(
        reverse(PLAN_ADD), plan_form(systems=[redis_target.pk]), follow=True
    )
    assert response.status_code == 200
    plan = MaintenancePlan.objects.get(name="Monthly maintenance")
    windows = list(plan.windows.order_by("starts_at"))
    assert f"Generated {len(windows)} upcoming window(s)." in response.content.decode()
    # About six months ahead of now, each the third Saturday 02:00-04:00 UTC.
    now = timezone.now()
    assert 5 <= len(windows) <= 7
    assert all(now <= w.starts_at <= now + dt.timedelta(days=183) for w in windows)
    for window in windows:
        assert window.starts_at.weekday() == 5 and 15 <= window.starts_at.day <= 21
        assert (window.starts_at.hour, window.duration) == (2, dt.timedelta(hours=2))
        assert [s.pk for s in window.systems.all()] == [redis_target.pk]
        assert window.rollback_plan == "Restore the pre-maintenance backup."
        assert window.email_list == ["users@example.com"]
        assert window.steps.count() == 9

    # Move the second occurrence by a day on its change page.
    moved, skipped = windows[1], windows[2]
    new_start = moved.starts_at + dt.timedelta(days=1)
    change_url = reverse("admin:maintenance_maintenancewindow_change", args=[moved.pk])
    form = {
        "title": moved.title,
        "kind": moved.kind,
        **split("starts_at", new_start),
        **split("ends_at", new_start + dt.timedelta(hours=2)),
        "systems": [redis_target.pk],
        "expected_impact": moved.expected_impact,
        "owner": "",
        "rollback_plan": moved.rollback_plan,
        "emails": moved.emails,
        "webhook": "",
        "announce_lead_hours": "72,24",
        **{f"{p}-{k}": "0" for p in WINDOW_INLINES for k in ("TOTAL_FORMS", "INITIAL_FORMS")},
    }
    # Moving it into the past is a form error that says what to fix.
    past = timezone.now() - dt.timedelta(days=2)
    response = staff_client.post(
        change_url,
        {**form, **split("starts_at", past), **split("ends_at", past + dt.timedelta(hours=2))},
    )
    assert "schedule it in the future" in " ".join(errors_of(response)["ends_at"])
    response = staff_client.post(change_url, form)
    assert response.status_code == 302
    # Skip the third on its "Cancel (skip)" page.
    staff_client.post(
        reverse("admin:maintenance_maintenancewindow_action", args=[skipped.pk, "cancel"]),
        {"text": "Release freeze"},
    )

    # Saving the plan again (as after any edit) regenerates without undoing either.
    response = staff_client.post(
        reverse("admin:maintenance_maintenanceplan_change", args=[plan.pk]),
        plan_form(systems=[redis_target.pk], expected_impact="Restarts, one by one."),
        follow=True,
    )
    assert "Generated" not in response.content.decode()
    assert plan.windows.count() == len(windows)
    moved.refresh_from_db()
    skipped.refresh_from_db()
    assert moved.starts_at == new_start.replace(microsecond=0)
    assert moved.occurrence_start == windows[1].occurrence_start  # its place in the rule
    assert moved.sequence == 1  # a new version of its calendar event
    assert skipped.status == WindowStatus.CANCELLED
    plan.refresh_from_db()
    assert plan.rrule == "FREQ=MONTHLY;BYDAY=SA;BYSETPOS=3"
    assert plan_generate_windows(plan=plan) == []


def test_window_admin_refuses_moving_a_started_window(staff_client, schedule, superuser):
    from maintenance.services import window_start

    window = schedule(title="Kernel patches")
    window_start(window=window, actor=superuser, override_reason="urgent")
    later = window.starts_at + dt.timedelta(hours=1)
    response = staff_client.post(
        reverse("admin:maintenance_maintenancewindow_change", args=[window.pk]),
        {
            "title": window.title,
            "kind": window.kind,
            **split("starts_at", later),
            **split("ends_at", later + dt.timedelta(hours=1)),
            "announce_lead_hours": "72,24",
            **{f"{p}-{k}": "0" for p in WINDOW_INLINES for k in ("TOTAL_FORMS", "INITIAL_FORMS")},
        },
    )
    assert "only the end of a window in progress" in " ".join(errors_of(response)["starts_at"])
    window.refresh_from_db()
    assert window.status == WindowStatus.IN_PROGRESS


@pytest.fixture
def security_team(db):
    return Team.objects.create(
        name="Security team", responsibility=Responsibility.SECURITY, email="sec@example.com"
    )


def mondays_at_nine(start: dt.datetime, days: int = 90) -> list[dt.datetime]:
    """Every Monday 09:00 UTC after `start`, up to `days` days after it."""
    day = start.astimezone(UTC).replace(hour=9, minute=0, second=0, microsecond=0)
    found = []
    while day <= start + dt.timedelta(days=days):
        if day.weekday() == 0 and day > start:
            found.append(day)
        day += dt.timedelta(days=1)
    return found


def task_form(team, **changes) -> dict:
    form = {
        "name": "Weekly security scan",
        "kind": TaskKind.SECURITY_SCAN,
        "team": team.pk,
        "rrule": "FREQ=WEEKLY;BYDAY=MO",
        **split("first_due", dt.datetime(2026, 1, 5, 9, 0, tzinfo=UTC)),
        "time_zone": "UTC",
        "description": "Review the findings.",
        "generate_ahead_days": "90",
        "active": "on",
    }
    form.update(changes)
    return form


@pytest.mark.parametrize(
    ("changes", "field", "says"),
    [
        ({"rrule": "FREQ=WEEKLY;BYDAY=XX"}, "rrule", "cannot be read"),
        ({"rrule": "BYDAY=MO"}, "rrule", "needs a FREQ"),
        ({"rrule": "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=31"}, "rrule", "no due date"),
        ({"rrule": "FREQ=MINUTELY"}, "rrule", "Use FREQ=YEARLY, MONTHLY, WEEKLY or DAILY"),
        ({"rrule": "FREQ=WEEKLY;UNTIL=20250101T000000Z"}, "rrule", "no due date"),
        ({"time_zone": "Mars/Olympus"}, "time_zone", "does not exist"),
    ],
)
def test_recurring_task_admin_shows_a_bad_rule_as_a_form_error(
    staff_client, security_team, changes, field, says
):
    response = staff_client.post(reverse(TASK_ADD), task_form(security_team, **changes))
    errors = errors_of(response)
    assert says in " ".join(errors[field]), errors
    assert says in response.content.decode()
    assert not RecurringTask.objects.exists()


def test_recurring_task_admin_generates_due_dates_and_keeps_a_good_rule(
    staff_client, security_team
):
    before = timezone.now()
    response = staff_client.post(reverse(TASK_ADD), task_form(security_team), follow=True)
    after = timezone.now()
    task = RecurringTask.objects.get(name="Weekly security scan")
    occurrences = list(task.occurrences.order_by("due_at"))
    assert f"Generated {len(occurrences)} due date(s)." in response.content.decode()
    # A new task starts from now (no look-back before it was tracked): every Monday 09:00
    # UTC from then to 90 days ahead, 12 or 13 of them depending on the day this runs.
    assert [o.due_at for o in occurrences] in (mondays_at_nine(before), mondays_at_nine(after))
    assert 12 <= len(occurrences) <= 13

    # Editing it to an impossible rule is refused on the page; the saved rule stays.
    change = reverse("admin:maintenance_recurringtask_change", args=[task.pk])
    response = staff_client.post(change, task_form(security_team, rrule="FREQ=WEEKLY;BYDAY=ZZ"))
    assert "cannot be read" in " ".join(errors_of(response)["rrule"])
    task.refresh_from_db()
    assert task.rrule == "FREQ=WEEKLY;BYDAY=MO"


def test_run_automatic_scan_button_queues_the_scan_and_shows_its_findings(
    staff_client, security_team, superuser
):
    scan_task = RecurringTask.objects.create(
        name="Weekly security scan",
        kind=TaskKind.SECURITY_SCAN,
        team=security_team,
        rrule="FREQ=WEEKLY;BYDAY=MO",
        first_due=dt.datetime(2026, 1, 5, 9, 0, tzinfo=UTC),
    )
    audit_task = RecurringTask.objects.create(
        name="Annual security audit",
        kind=TaskKind.SECURITY_AUDIT,
        team=security_team,
        rrule="FREQ=YEARLY",
        first_due=dt.datetime(2026, 11, 30, 17, 0, tzinfo=UTC),
    )
    occurrence = TaskOccurrence.objects.create(task=scan_task, due_at=timezone.now())
    other = TaskOccurrence.objects.create(task=audit_task, due_at=timezone.now())
    page_url = reverse("admin:maintenance_taskoccurrence_change", args=[occurrence.pk])
    scan_url = reverse("admin:maintenance_taskoccurrence_scan", args=[occurrence.pk])

    page = staff_client.get(page_url).content.decode()
    assert "Run automatic scan" in page and scan_url in page
    other_page = reverse("admin:maintenance_taskoccurrence_change", args=[other.pk])
    assert "Run automatic scan" not in staff_client.get(other_page).content.decode()

    assert staff_client.get(scan_url).status_code == 405  # a button, never a link
    response = staff_client.post(scan_url, follow=True)
    assert response.redirect_chain[-1][0] == page_url
    assert "Scan queued" in response.content.decode()
    occurrence.refresh_from_db()
    assert occurrence.scan_status == ScanStatus.QUEUED
    assert AuditRecord.objects.filter(
        object_id=str(occurrence.pk),
        outcome=AuditOutcome.REQUESTED,
        message="Security scan requested.",
        actor=superuser,
    ).exists()
    # Pressed twice: the second press says so and queues nothing more.
    again = staff_client.post(scan_url, follow=True).content.decode()
    assert "already queued or running" in again

    # The worker's run; its findings then show on the occurrence page.
    tasks.run_security_scan.apply(args=[occurrence.pk])
    occurrence.refresh_from_db()
    assert occurrence.scan_status == ScanStatus.FINISHED
    page = staff_client.get(page_url).content.decode()
    assert "deployment checks" in page and "vulnerability audit" in page
    assert occurrence.evidence.name in page


def test_run_automatic_scan_needs_the_permission(client, security_team):
    scan_task = RecurringTask.objects.create(
        name="Weekly security scan",
        kind=TaskKind.SECURITY_SCAN,
        team=security_team,
        rrule="FREQ=WEEKLY;BYDAY=MO",
        first_due=dt.datetime(2026, 1, 5, 9, 0, tzinfo=UTC),
    )
    occurrence = TaskOccurrence.objects.create(task=scan_task, due_at=timezone.now())
    viewer = get_user_model().objects.create_user("viewer", password="x-12345678!", is_staff=True)
    viewer.user_permissions.add(
        Permission.objects.get(codename="view_taskoccurrence"),
        Permission.objects.get(codename="change_taskoccurrence"),
    )
    client.force_login(viewer)
    page_url = reverse("admin:maintenance_taskoccurrence_change", args=[occurrence.pk])
    assert "Run automatic scan" not in client.get(page_url).content.decode()
    response = client.post(
        reverse("admin:maintenance_taskoccurrence_scan", args=[occurrence.pk]), follow=True
    )
    assert "complete_taskoccurrence" in response.content.decode()
    occurrence.refresh_from_db()
    assert occurrence.scan_status == ScanStatus.NONE
