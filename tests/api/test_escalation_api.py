"""Acknowledging through the API stops the escalation like the portal and the link do, and
those paged so far hear who acknowledged."""

from incidents.models import EscalationStatus, PageStatus
from incidents.services import incident_open
from opsportal.people.models import Notification
from tests.incidents.conftest import set_up_paging


def test_acknowledging_by_the_api_stops_the_escalation(api_client, settings):
    settings.PORTAL_URL = "http://portal.test"
    set_up_paging()
    client, _, _ = api_client("On-call engineers", username="oscar")
    incident = incident_open(title="Checkout API down", severity="sev1", category="other")
    escalation = incident.escalations.get()

    response = client.post(f"/api/v1/incidents/{incident.pk}/acknowledge/", {"note": "on it"})
    assert response.status_code == 200, response.content

    escalation.refresh_from_db()
    assert (escalation.status, escalation.stopped_by) == (EscalationStatus.ACKNOWLEDGED, "oscar")
    assert set(escalation.pages.exclude(sequence=0).values_list("status", flat=True)) == {
        PageStatus.CANCELLED
    }
    told = Notification.objects.filter(subject__startswith="[SEV1] Acknowledged by oscar")
    assert set(told.values_list("recipient", flat=True)) >= {
        "alice@example.com",
        "alice@pager.example.com",
    }
