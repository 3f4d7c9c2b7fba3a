"""Alert intake (incidents.services.alerts): Alertmanager's webhook, repeat and resolved
alerts, refused input, and maintenance-window suppression."""

import datetime as dt
import json

import pytest
from django.urls import reverse
from django.utils import timezone

from incidents.models import Alert, Incident, Status, TimelineEvent, TimelineKind
from incidents.services import IncidentRefused, alert_receive, alerts_release_held
from opsportal.people.models import Notification

TOKEN = "am-token-0123456789"


def payload(status="firing", fingerprint="f1", **labels):
    return {
        "version": "4",
        "status": status,
        "receiver": "opsportal",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "alerts": [
            {
                "status": status,
                "labels": {
                    "alertname": "ApiLatencyHigh",
                    "severity": "critical",
                    "category": "api",
                    **labels,
                },
                "annotations": {
                    "summary": "API p95 above 500ms",
                    "description": "p95 812ms for 5m",
                },
                "startsAt": "2026-11-27T00:00:00Z",
                "generatorURL": "http://prometheus/graph",
                "fingerprint": fingerprint,
            }
        ],
    }


@pytest.fixture
def webhook(client, settings):
    settings.ALERTMANAGER_WEBHOOK_TOKEN = TOKEN

    def post(body, token=TOKEN):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return client.post(
            reverse("incidents:alertmanager_webhook"),
            json.dumps(body),
            content_type="application/json",
            headers=headers,
        )

    return post


def test_firing_opens_an_incident_mapped_from_labels(webhook, teams, runbooks, http_endpoint):
    response = webhook(payload(system=http_endpoint.name, runbook="High API Response Times"))
    assert response.status_code == 200, response.content
    incident = Incident.objects.get()
    assert (incident.severity, incident.category, incident.title) == (
        "sev1",
        "api",
        "API p95 above 500ms",
    )
    assert [s.pk for s in incident.affected_systems.all()] == [http_endpoint.pk]
    assert incident.steps.count() == 9 and incident.source == "alert"
    assert "p95 812ms" in incident.timeline.get(kind=TimelineKind.ALERT).output
    assert Notification.objects.filter(about_id=str(incident.pk)).exists()
    webhook(payload())
    assert Incident.objects.count() == 1 and Alert.objects.count() == 2
    webhook(payload(status="resolved", auto_resolve="true"))
    incident.refresh_from_db()
    assert incident.status == Status.RESOLVED


def test_token_is_required(webhook, settings, db):
    assert webhook(payload(), token="wrong").status_code == 401
    assert webhook(payload(), token=None).status_code == 401
    settings.ALERTMANAGER_WEBHOOK_TOKEN = ""
    assert webhook(payload()).status_code == 503
    assert not Alert.objects.exists()


def test_malformed_payload_is_a_400(webhook, db):
    assert webhook({"nothing": 1}).status_code == 400


def test_a_maintenance_window_suppresses_paging(teams, http_endpoint, superuser):
    from maintenance.models import MaintenanceWindow

    now = timezone.now()
    window = MaintenanceWindow.objects.create(
        title="API upgrade",
        starts_at=now - dt.timedelta(minutes=5),
        ends_at=now + dt.timedelta(hours=1),
        suppress_from=now - dt.timedelta(minutes=5),
        suppress_until=now + dt.timedelta(hours=1),
    )
    window.systems.add(http_endpoint)
    alert = alert_receive(
        fingerprint="maint",
        status="firing",
        title="API down",
        severity="sev1",
        category="api",
        systems=[http_endpoint.name],
    )
    assert alert.suppressed_by_id == window.pk and alert.incident is None
    assert not Incident.objects.exists() and not Notification.objects.exists()


def test_repeat_firing_joins_the_open_incident_and_resolved_auto_resolves(teams, runbooks):
    first = alert_receive(
        fingerprint="abc",
        status="firing",
        title="API p95 over 500ms",
        severity="sev3",
        category="api",
        evidence="p95=812ms",
    )
    again = alert_receive(
        fingerprint="abc",
        status="firing",
        title="API p95 over 500ms",
        severity="sev2",
        category="api",
    )
    assert first.incident_id == again.incident_id
    assert Incident.objects.count() == 1
    incident = first.incident
    incident.refresh_from_db()
    assert incident.severity == "sev2"  # the repeat was worse: escalated
    assert incident.source == "alert"
    resolved = alert_receive(
        fingerprint="abc",
        status="resolved",
        title="API p95 over 500ms",
        severity="sev2",
        category="api",
        auto_resolve=True,
    )
    incident.refresh_from_db()
    assert resolved.incident_id == incident.pk and incident.status == Status.RESOLVED
    messages = list(
        incident.timeline.filter(kind=TimelineKind.ALERT).values_list("message", flat=True)
    )
    assert messages[0].startswith("Alert firing") and messages[1].startswith("Alert fired again")
    assert messages[2].startswith("Alert resolved")
    # After resolution a new firing opens a new incident.
    alert_receive(
        fingerprint="abc",
        status="firing",
        title="API p95 over 500ms",
        severity="sev3",
        category="api",
    )
    assert Incident.objects.count() == 2


def test_bad_alert_input_is_refused(db):
    with pytest.raises(IncidentRefused, match="firing or resolved"):
        alert_receive(fingerprint="x", status="pending", title="t", severity="sev3", category="api")
    with pytest.raises(IncidentRefused, match="Unknown severity"):
        alert_receive(fingerprint="x", status="firing", title="t", severity="p1", category="api")
    assert not Alert.objects.exists() and not TimelineEvent.objects.exists()


def test_a_resolved_alert_without_auto_resolve_is_recorded_but_leaves_the_incident_open(
    teams, runbooks
):
    firing = alert_receive(
        fingerprint="nar", status="firing", title="Disk 90%", severity="sev3", category="other"
    )
    alert_receive(
        fingerprint="nar", status="resolved", title="Disk 90%", severity="sev3", category="other"
    )
    incident = firing.incident
    incident.refresh_from_db()
    assert incident.status == Status.OPEN
    last = incident.timeline.filter(kind=TimelineKind.ALERT).last()
    assert last.message.startswith("Alert resolved") and last.source == "alert"


def test_held_alerts_still_firing_are_received_anew_when_a_window_releases_them(
    teams, http_endpoint
):
    """What maintenance asks of incidents when a window's suppression ends: each held
    alert still firing is received again (an incident opens, people are paged); one that
    resolved meanwhile is left alone; asking twice hands nothing over twice."""
    from maintenance.models import MaintenanceWindow

    now = timezone.now()
    window = MaintenanceWindow.objects.create(
        title="API upgrade",
        starts_at=now - dt.timedelta(minutes=5),
        ends_at=now + dt.timedelta(hours=1),
        suppress_from=now - dt.timedelta(minutes=5),
        suppress_until=now + dt.timedelta(hours=1),
    )
    window.systems.add(http_endpoint)
    for fingerprint in ("still-firing", "cleared"):
        held = alert_receive(
            fingerprint=fingerprint,
            status="firing",
            title=f"API {fingerprint}",
            severity="sev2",
            category="api",
            systems=[http_endpoint.name],
            evidence="p95=900ms",
        )
        assert held.suppressed_by_id == window.pk
    alert_receive(
        fingerprint="cleared",
        status="resolved",
        title="API cleared",
        severity="sev2",
        category="api",
    )
    assert not Incident.objects.exists()
    # The window ended: it suppresses nothing any more.
    MaintenanceWindow.objects.filter(pk=window.pk).update(suppress_until=timezone.now())

    released = alerts_release_held(window=window)

    (again,) = Alert.objects.filter(pk__in=released)
    assert again.fingerprint == "still-firing" and again.suppressed_by_id is None
    assert again.evidence == "p95=900ms"
    assert list(again.systems.values_list("pk", flat=True)) == [http_endpoint.pk]
    incident = Incident.objects.get()
    assert again.incident == incident and incident.alert_fingerprint == "still-firing"
    assert Notification.objects.filter(about_id=str(incident.pk)).exists()
    assert alerts_release_held(window=window) == []
    assert Incident.objects.count() == 1
