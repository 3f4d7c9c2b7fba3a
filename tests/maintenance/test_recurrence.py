"""Recurring plans: the runbook's rules over years, moved and skipped occurrences, bad input."""

import calendar
import datetime as dt
import itertools

import pytest
from django.core.exceptions import ValidationError

from maintenance.models import MaintenancePlan, MaintenanceWindow, WindowStatus
from maintenance.services import (
    RUNBOOK_PLANS,
    plan_generate_windows,
    plan_occurrences,
    plan_save,
    plan_validate,
    window_cancel,
    window_update,
)

UTC = dt.UTC


def third_saturday(year: int, month: int) -> int:
    saturdays = [
        week[calendar.SATURDAY]
        for week in calendar.monthcalendar(year, month)
        if week[calendar.SATURDAY]
    ]
    return saturdays[2]


def runbook_plan(name: str) -> MaintenancePlan:
    return MaintenancePlan(**next(p for p in RUNBOOK_PLANS if p["name"] == name))


def test_monthly_plan_is_the_third_saturday_0200_0400_utc_for_ten_years():
    plan = runbook_plan("Monthly maintenance")
    found = plan_occurrences(
        plan=plan,
        start=dt.datetime(2026, 1, 1, tzinfo=UTC),
        end=dt.datetime(2036, 1, 1, tzinfo=UTC),
    )
    assert len(found) == 120
    expected = [
        dt.datetime(year, month, third_saturday(year, month), 2, 0, tzinfo=UTC)
        for year in range(2026, 2036)
        for month in range(1, 13)
    ]
    assert [start for start, _ in found] == expected
    assert all(end - start == dt.timedelta(hours=2) for start, end in found)
    # The edge cases: months starting on a Saturday (third Saturday is the 15th) and
    # months with five Saturdays (still the third, not the last).
    starts = {(s.year, s.month): s.day for s, _ in found}
    saturday_first = [
        (y, m)
        for y in range(2026, 2036)
        for m in range(1, 13)
        if dt.date(y, m, 1).weekday() == calendar.SATURDAY
    ]
    assert saturday_first and all(starts[key] == 15 for key in saturday_first)
    five_saturdays = [
        (y, m)
        for y in range(2026, 2036)
        for m in range(1, 13)
        if sum(1 for w in calendar.monthcalendar(y, m) if w[calendar.SATURDAY]) == 5
    ]
    assert five_saturdays and all(15 <= starts[key] <= 21 for key in five_saturdays)
    assert starts[(2026, 8)] == 15  # 1 August 2026 is a Saturday


def test_quarterly_and_annual_plans():
    quarterly = plan_occurrences(
        plan=runbook_plan("Quarterly security updates and patches"),
        start=dt.datetime(2026, 1, 1, tzinfo=UTC),
        end=dt.datetime(2029, 1, 1, tzinfo=UTC),
    )
    assert [(s.year, s.month) for s, _ in quarterly] == [
        (y, m) for y in (2026, 2027, 2028) for m in (1, 4, 7, 10)
    ]
    assert all(s.weekday() == calendar.SATURDAY and s.day <= 7 for s, _ in quarterly)
    annual = plan_occurrences(
        plan=runbook_plan("Annual major version upgrades"),
        start=dt.datetime(2026, 1, 1, tzinfo=UTC),
        end=dt.datetime(2031, 1, 1, tzinfo=UTC),
    )
    assert len(annual) == 5
    assert all(s.month == 2 and s.weekday() == calendar.SATURDAY and s.day <= 7 for s, _ in annual)
    assert all(e - s == dt.timedelta(hours=4) for s, e in annual)


def test_runbook_plans_never_overlap_each_other():
    spans = []
    for values in RUNBOOK_PLANS:
        spans += plan_occurrences(
            plan=MaintenancePlan(**values),
            start=dt.datetime(2026, 1, 1, tzinfo=UTC),
            end=dt.datetime(2036, 1, 1, tzinfo=UTC),
        )
    spans.sort()
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in itertools.pairwise(spans))


def test_a_rule_in_a_local_zone_keeps_local_time_across_daylight_saving():
    plan = MaintenancePlan(
        name="Paris",
        rrule="FREQ=MONTHLY;BYDAY=SA;BYSETPOS=3",
        first_start=dt.datetime(2026, 1, 17, 1, 0, tzinfo=UTC),  # 02:00 in Paris (CET)
        time_zone="Europe/Paris",
        duration_minutes=120,
    )
    found = dict(
        plan_occurrences(
            plan=plan,
            start=dt.datetime(2026, 1, 1, tzinfo=UTC),
            end=dt.datetime(2026, 12, 31, tzinfo=UTC),
        )
    )
    assert dt.datetime(2026, 1, 17, 1, 0, tzinfo=UTC) in found  # winter: UTC+1
    assert dt.datetime(2026, 7, 18, 0, 0, tzinfo=UTC) in found  # summer: UTC+2


@pytest.mark.parametrize(
    ("changes", "field", "says"),
    [
        ({"rrule": "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30"}, "rrule", "no occurrence"),
        ({"rrule": "FREQ=FORTNIGHTLY"}, "rrule", "cannot be read"),
        ({"rrule": "BYDAY=SA"}, "rrule", "needs a FREQ"),
        ({"rrule": "FREQ=MONTHLY;UNTIL=20250101T000000Z"}, "rrule", "no occurrence"),
        ({"duration_minutes": 0}, "duration_minutes", "at least one minute"),
        ({"rrule": "FREQ=DAILY", "duration_minutes": 25 * 60}, "duration_minutes", "would overlap"),
        (
            {"rrule": "FREQ=WEEKLY;BYDAY=SA,SU", "duration_minutes": 2 * 24 * 60},
            "duration_minutes",
            "1 day(s) apart",
        ),
        ({"time_zone": "Europe/Atlantis"}, "time_zone", "does not exist"),
    ],
)
def test_bad_plans_are_refused_with_what_to_fix(changes, field, says):
    plan = runbook_plan("Monthly maintenance")
    for name, value in changes.items():
        setattr(plan, name, value)
    with pytest.raises(ValidationError) as refused:
        plan_validate(plan=plan)
    assert says in " ".join(refused.value.message_dict[field])


@pytest.mark.django_db
def test_windows_are_generated_ahead_and_a_moved_or_skipped_occurrence_stays_so(superuser):
    now = dt.datetime(2026, 12, 1, tzinfo=UTC)
    plan = runbook_plan("Monthly maintenance")
    plan.save()
    created = plan_generate_windows(plan=plan, now=now)
    # About six months ahead: the third Saturdays of Dec 2026 .. May 2027.
    assert [w.starts_at.date() for w in created] == [
        dt.date(2026, 12, 19),
        dt.date(2027, 1, 16),
        dt.date(2027, 2, 20),
        dt.date(2027, 3, 20),
        dt.date(2027, 4, 17),
        dt.date(2027, 5, 15),
    ]
    assert all(w.steps.count() == 9 for w in created)
    moved, skipped = created[1], created[2]
    moved.starts_at += dt.timedelta(days=1)
    moved.ends_at += dt.timedelta(days=1)
    # Moving needs the window to be in the future relative to the real clock.
    window_update(window=moved, actor=superuser)
    window_cancel(window=skipped, actor=superuser, reason="Conflicts with the release freeze")

    again = plan_generate_windows(plan=plan, now=now)
    assert again == []
    windows = list(MaintenanceWindow.objects.filter(plan=plan).order_by("occurrence_start"))
    assert len(windows) == 6
    moved.refresh_from_db()
    assert moved.starts_at == dt.datetime(2027, 1, 17, 2, 0, tzinfo=UTC)
    assert moved.occurrence_start == dt.datetime(2027, 1, 16, 2, 0, tzinfo=UTC)
    skipped.refresh_from_db()
    assert skipped.status == WindowStatus.CANCELLED
    plan.refresh_from_db()
    assert plan.rrule == "FREQ=MONTHLY;BYDAY=SA;BYSETPOS=3"  # the rule is untouched
    # A month later the horizon moves on by one occurrence.
    later = plan_generate_windows(plan=plan, now=now + dt.timedelta(days=31))
    assert [w.starts_at.date() for w in later] == [dt.date(2027, 6, 19)]


@pytest.mark.django_db
def test_plan_save_refuses_a_bad_rule_and_saves_nothing(superuser):
    plan = MaintenancePlan(
        name="Broken",
        rrule="FREQ=MONTHLY;BYMONTHDAY=31;BYMONTH=4",
        first_start=dt.datetime(2030, 1, 1, tzinfo=UTC),
        duration_minutes=60,
    )
    with pytest.raises(ValidationError):
        plan_save(plan=plan, actor=superuser)
    assert not MaintenancePlan.objects.filter(name="Broken").exists()
