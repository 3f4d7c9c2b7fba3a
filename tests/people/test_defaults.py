"""The runbook's contact list seeded as teams, once, without overwriting an operator's edits."""

import pytest

from opsportal.people.models import OnCallRotation, Responsibility, Team
from opsportal.people.services import people_load_defaults

pytestmark = pytest.mark.django_db


def test_every_role_of_the_contact_list_gets_a_team_and_on_call_a_rotation():
    people_load_defaults()
    assert sorted(Team.objects.values_list("responsibility", flat=True)) == sorted(
        [
            Responsibility.ON_CALL,
            Responsibility.SECURITY,
            Responsibility.DATABASE,
            Responsibility.DEVOPS,
        ]
    )
    rotation = OnCallRotation.objects.get()
    assert rotation.team.responsibility == Responsibility.ON_CALL


def test_loading_again_keeps_an_operators_edits_and_restores_only_what_is_missing():
    people_load_defaults()
    security = Team.objects.get(responsibility=Responsibility.SECURITY)
    security.name = "SecOps"
    security.save()
    OnCallRotation.objects.update(name="Platform pager", shift_hours=24)
    Team.objects.filter(responsibility=Responsibility.DEVOPS).delete()

    people_load_defaults()

    assert Team.objects.get(responsibility=Responsibility.SECURITY).name == "SecOps"
    rotation = OnCallRotation.objects.get()
    assert (rotation.name, rotation.shift_hours) == ("Platform pager", 24)
    assert Team.objects.filter(responsibility=Responsibility.DEVOPS).count() == 1
    assert Team.objects.count() == 4
