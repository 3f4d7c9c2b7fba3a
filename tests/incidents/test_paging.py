"""incidents.services.paging: who is paged for an incident, by severity and category."""

import pytest

from incidents.models import Status, TimelineKind
from incidents.services import incident_open, paging_responsibilities
from opsportal.audit.models import AuditRecord
from opsportal.people.models import Notification, Responsibility


def kinds(incident):
    return list(incident.timeline.values_list("kind", flat=True))


def test_open_pages_on_call_and_devops_for_a_container_incident(teams, engineer):
    incident = incident_open(
        title="api container restarting",
        severity="sev2",
        category="container",
        team=teams[Responsibility.DEVOPS],
        reporter=engineer,
        symptoms="OOMKilled errors",
    )
    assert incident.status == Status.OPEN
    assert incident.detected_at is not None
    recipients = set(
        Notification.objects.filter(about_id=str(incident.pk)).values_list("recipient", flat=True)
    )
    assert recipients == {
        "on_call@example.com",
        "olga@example.com",
        "olga@pager",
        "devops@example.com",
    }
    paged = incident.timeline.filter(kind=TimelineKind.NOTIFICATION)
    assert paged.count() == 2
    assert any("olga@pager" in e.message for e in paged)
    assert kinds(incident)[0] == TimelineKind.OPENED
    assert AuditRecord.objects.filter(
        object_type="incidents.incident", object_id=str(incident.pk)
    ).exists()


def test_routing_follows_severity_and_category():
    assert paging_responsibilities(severity="sev4", category="security") == ["security"]
    assert paging_responsibilities(severity="sev3", category="database") == ["on_call", "database"]
    assert paging_responsibilities(severity="sev1", category="api") == ["on_call", "devops"]
    assert paging_responsibilities(severity="sev4", category="other") == ["on_call"]


@pytest.mark.parametrize(
    ("category", "paged_team"),
    [("database", "database@example.com"), ("security", "security@example.com")],
)
def test_opening_pages_the_dbas_or_the_security_team_by_category(
    teams, engineer, category, paged_team
):
    incident = incident_open(title="x", severity="sev2", category=category, reporter=engineer)
    recipients = set(
        Notification.objects.filter(about_id=str(incident.pk)).values_list("recipient", flat=True)
    )
    assert paged_team in recipients and "olga@pager" in recipients
    assert "devops@example.com" not in recipients
    paged = " ".join(
        incident.timeline.filter(kind=TimelineKind.NOTIFICATION).values_list("message", flat=True)
    )
    assert f"({teams[category].name}): " in paged and paged_team in paged, paged
