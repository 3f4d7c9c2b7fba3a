import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from incidents.services import incidents_load_defaults
from opsportal.access import groups_load_defaults
from opsportal.people.models import Contact, OnCallRotation, Responsibility, RotationMember, Team
from opsportal.people.services import people_load_defaults


@pytest.fixture
def teams(db):
    """The runbook's contacts as teams with addresses, and someone on call."""
    people_load_defaults()
    for team in Team.objects.all():
        team.email = f"{team.responsibility}@example.com"
        team.save()
    on_call = Team.objects.get(responsibility=Responsibility.ON_CALL)
    contact = Contact.objects.create(
        name="Olga On-call", team=on_call, email="olga@example.com", pager_email="olga@pager"
    )
    RotationMember.objects.create(rotation=OnCallRotation.objects.get(), contact=contact)
    return {t.responsibility: t for t in Team.objects.all()}


@pytest.fixture
def runbooks(db):
    incidents_load_defaults()


@pytest.fixture
def engineer(db, teams):
    """A DevOps engineer: in the DevOps team and the seeded DevOps role group."""
    groups_load_defaults()
    user = get_user_model().objects.create_user("erin", "erin@example.com", "pw-erin-123!")
    user.is_staff = True
    user.save()
    user.groups.add(Group.objects.get(name="DevOps"))
    teams[Responsibility.DEVOPS].members.add(user)
    return user
