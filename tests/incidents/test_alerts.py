"""Alert intake: Alertmanager's webhook and maintenance-window suppression."""

import datetime as dt
import json

import pytest
from django.urls import reverse
from django.utils import timezone

from incidents.models import Alert, Incident, Status, TimelineKind
from incidents.services import alert_receive
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
