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


@pytest.fixture
def paging(db, settings):
    """The runbook's teams and default escalation policies (as load_defaults makes them):
    Alice alone in the primary rotation (so on call now), Dave in DevOps with the team's
    address. Returns the people by name."""
    settings.PORTAL_URL = "http://portal.test"
    return set_up_paging()


def set_up_paging() -> dict:
    from incidents.services.escalation import escalation_load_defaults

    people_load_defaults()
    escalation_load_defaults()
    teams = {t.responsibility: t for t in Team.objects.all()}
    devops = teams[Responsibility.DEVOPS]
    devops.email = "devops@example.com"
    devops.save()
    User = get_user_model()
    alice_user = User.objects.create_user("alice", "alice@example.com", "pw-alice-123!")
    alice = Contact.objects.create(
        name="Alice",
        team=teams[Responsibility.ON_CALL],
        user=alice_user,
        email="alice@example.com",
        pager_email="alice@pager.example.com",
    )
    RotationMember.objects.create(rotation=OnCallRotation.objects.get(), contact=alice)
    dave = Contact.objects.create(name="Dave", team=devops, email="dave@example.com")
    erin = User.objects.create_user("erin", "erin@example.com", "pw-erin-123!", is_staff=True)
    teams[Responsibility.ON_CALL].members.add(erin)
    return {"alice": alice, "dave": dave, "erin": erin, "teams": teams}
