"""Configurable announcement lead times: used when set, and refused through the services
(not only the admin form) when they are not whole hours, so a bad value saved by a script
or an import cannot stop every window's announcements at the next tick."""

import datetime as dt

import pytest
from django.core.exceptions import ValidationError

from maintenance.models import AnnouncementKind, MaintenancePlan, MaintenanceWindow
from maintenance.services import RUNBOOK_PLANS, plan_validate, windows_announce_due

pytestmark = pytest.mark.django_db


def test_a_window_announces_at_its_own_lead_times(schedule, devops_team):
    window = schedule(starts_in=dt.timedelta(hours=60), announce_lead_hours="48, 2")
    start = window.starts_at
    assert windows_announce_due(now=start - dt.timedelta(hours=49)) == 0
    assert windows_announce_due(now=start - dt.timedelta(hours=47)) == 1
    assert windows_announce_due(now=start - dt.timedelta(hours=23)) == 0  # no 24 h one
    assert windows_announce_due(now=start - dt.timedelta(hours=1, minutes=59)) == 1
    assert list(
        window.announcements.filter(kind=AnnouncementKind.LEAD).values_list("lead_hours", flat=True)
    ) == [48, 2]


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("72,soon", "whole hours"),
        ("72,0", "between 1 and"),
        ("100000", "between 1 and"),
    ],
)
def test_bad_lead_times_are_refused_by_the_services(schedule, value, says):
    with pytest.raises(ValidationError) as refused:
        schedule(announce_lead_hours=value)
    assert says in " ".join(refused.value.message_dict["announce_lead_hours"])
    assert not MaintenanceWindow.objects.exists()

    plan = MaintenancePlan(**next(p for p in RUNBOOK_PLANS if p["name"] == "Monthly maintenance"))
    plan.announce_lead_hours = value
    with pytest.raises(ValidationError) as refused:
        plan_validate(plan=plan)
    assert says in " ".join(refused.value.message_dict["announce_lead_hours"])
