"""Alertmanager's webhook during a started window pages nobody; alerts still firing when the
window ends (Alertmanager sends a firing alert again only after its repeat interval, hours
later) are handled normally at the end, without waiting for that resend."""

import datetime as dt
import json
import time

import pytest
from django.urls import reverse
from django.utils import timezone

from incidents.models import Alert, Incident
from incidents.services import alert_receive
from maintenance.services import maintenance_tick, window_finish, window_start, window_update
from opsportal.people.models import Notification, Responsibility, Team

pytestmark = pytest.mark.django_db
TOKEN = "am-token-maintenance-0123"


@pytest.fixture
def on_call_team(db):
    return Team.objects.create(
        name="On-call", responsibility=Responsibility.ON_CALL, email="oncall@example.com"
    )


@pytest.fixture
def webhook(client, settings):
    settings.ALERTMANAGER_WEBHOOK_TOKEN = TOKEN

    def post(*, system, fingerprint, status="firing"):
        body = {
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
                        "alertname": "DiskAlmostFull",
                        "severity": "critical",
                        "category": "database",
                        "system": system.name,
                    },
                    "annotations": {"summary": f"Disk almost full on {system.name}"},
                    "startsAt": "2026-11-27T00:00:00Z",
                    "fingerprint": fingerprint,
                }
            ],
        }
        response = client.post(
            reverse("incidents:alertmanager_webhook"),
            json.dumps(body),
            content_type="application/json",
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert response.status_code < 300, response.content
        return Alert.objects.filter(fingerprint=fingerprint).latest("received_at", "id")

    return post


def test_an_alertmanager_alert_during_a_window_is_recorded_and_pages_nobody(
    schedule, superuser, postgres_target, redis_target, webhook, on_call_team
):
    window = schedule(systems=[postgres_target], starts_in=dt.timedelta(0))
    window_start(window=window, actor=superuser, override_reason="emergency patch")
    notifications_before = Notification.objects.count()

    suppressed = webhook(system=postgres_target, fingerprint="am-disk-pg")
    assert suppressed.suppressed_by == window and suppressed.incident is None
    assert not Incident.objects.exists()
    assert Notification.objects.count() == notifications_before  # nobody paged

    unaffected = webhook(system=redis_target, fingerprint="am-disk-redis")
    assert unaffected.suppressed_by is None and unaffected.incident is not None


def test_alerts_still_firing_when_the_window_is_completed_open_an_incident(
    schedule, superuser, postgres_target, redis_target
):
    window = schedule(systems=[postgres_target, redis_target], starts_in=dt.timedelta(0))
    window_start(window=window, actor=superuser, override_reason="emergency patch")
    for system, fingerprint in ((postgres_target, "still-firing"), (redis_target, "cleared")):
        alert = alert_receive(
            fingerprint=fingerprint,
            status="firing",
            title=f"Disk almost full on {system.name}",
            severity="sev2",
            category="database",
            systems=[system],
        )
        assert alert.suppressed_by == window
    # The cache's alert cleared during the window; the database's did not.
    alert_receive(
        fingerprint="cleared",
        status="resolved",
        title=f"Disk almost full on {redis_target.name}",
        severity="sev2",
        category="database",
        systems=[redis_target],
    )
    assert not Incident.objects.exists()

    window_finish(window=window, actor=superuser)

    incident = Incident.objects.get()
    assert "test-postgres" in incident.title or postgres_target in incident.systems.all()
    assert incident.alerts.get().fingerprint == "still-firing"
    # Running the minute tick afterwards hands nothing over a second time.
    maintenance_tick()
    assert Incident.objects.count() == 1
    assert Alert.objects.filter(fingerprint="still-firing").count() == 2


def test_alerts_still_firing_when_a_window_runs_past_its_end_open_an_incident(
    schedule, superuser, postgres_target
):
    window = schedule(
        systems=[postgres_target], starts_in=dt.timedelta(0), length=dt.timedelta(minutes=30)
    )
    window_start(window=window, actor=superuser, override_reason="emergency")
    alert_receive(
        fingerprint="still-firing",
        status="firing",
        title="Replication lag on test-postgres",
        severity="sev2",
        category="database",
        systems=[postgres_target],
    )
    maintenance_tick()
    assert not Incident.objects.exists()  # still inside the window

    # The window is cut short to end in two seconds, and nobody completes it: suppression
    # stops at the planned end, and the next tick hands the alert over.
    window.refresh_from_db()
    window.ends_at = timezone.now() + dt.timedelta(seconds=2)
    window_update(window=window, actor=superuser)
    time.sleep(2.5)
    maintenance_tick()
    assert Incident.objects.get().alerts.get().fingerprint == "still-firing"
    maintenance_tick()
    assert Incident.objects.count() == 1
