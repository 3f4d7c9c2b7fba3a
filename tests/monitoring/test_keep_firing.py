"""An alert clears only after its condition has been false for the rule's hold time
(keep_firing_seconds), so a fault that comes back keeps its one incident open."""

from __future__ import annotations

import datetime as dt

import pytest

from incidents.models import Incident, Status
from incidents.services import incidents_load_defaults
from opsportal.monitoring import services
from opsportal.monitoring.models import AlertRule, AlertState, AlertStatus

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
def slow_rule(db):
    incidents_load_defaults()
    rule = AlertRule(
        name="Probe slower than 500 ms",
        metric="http_latency_ms",
        comparison="gt",
        threshold=500,
        for_seconds=0,
        keep_firing_seconds=300,
        severity="sev2",
        category="api",
        runbook_name="High API Response Times",
        auto_resolve=True,
    )
    rule.full_clean()
    rule.save()
    return rule


def sample(endpoint, value: float, seconds: float) -> list[str]:
    """Evaluate the rules on one probe taken `seconds` after T0; the changes it caused."""
    transitions = services.alerts_evaluate(
        values={(endpoint.pk, "http_latency_ms", ""): (value, T0 + dt.timedelta(seconds=seconds))},
        systems={endpoint.pk: endpoint},
    )
    return [change for _, change in transitions]


def test_the_alert_clears_only_after_the_hold_time_and_a_relapse_keeps_its_incident(
    slow_rule, http_endpoint
):
    assert sample(http_endpoint, 900, 0) == ["firing"]
    (incident,) = Incident.objects.all()

    # Fine for less than the hold time: still firing, the incident stays open.
    assert sample(http_endpoint, 100, 10) == []
    assert sample(http_endpoint, 100, 200) == []
    state = AlertState.objects.get(rule=slow_rule)
    assert state.status == AlertStatus.FIRING
    assert state.clearing_since == T0 + dt.timedelta(seconds=10)
    incident.refresh_from_db()
    assert incident.status != Status.RESOLVED

    # The fault comes back within the hold: same alert, same incident, nobody paged again.
    assert sample(http_endpoint, 900, 250) == []
    state.refresh_from_db()
    assert state.status == AlertStatus.FIRING and state.clearing_since is None

    # The hold counts again from the last time the condition was true.
    assert sample(http_endpoint, 100, 260) == []
    assert sample(http_endpoint, 100, 559) == []  # false for 299 s
    incident.refresh_from_db()
    assert incident.status != Status.RESOLVED
    assert sample(http_endpoint, 100, 560) == ["resolved"]  # false for 300 s
    incident.refresh_from_db()
    assert incident.status == Status.RESOLVED
    assert Incident.objects.count() == 1
    assert incident.timeline.filter(message__contains="Alert firing").count() == 1
    assert not incident.timeline.filter(message__contains="fired again").exists()
    state.refresh_from_db()
    assert state.status == AlertStatus.OK and state.clearing_since is None


def test_without_a_hold_time_the_alert_clears_at_the_first_good_sample(slow_rule, http_endpoint):
    slow_rule.keep_firing_seconds = 0
    slow_rule.save()
    assert sample(http_endpoint, 900, 0) == ["firing"]
    assert sample(http_endpoint, 100, 1) == ["resolved"]


def test_the_hold_time_is_shown_with_the_rule(slow_rule, staff_client):
    assert "kept firing 300 s after it clears" in slow_rule.condition
    page = staff_client.get(f"/admin/monitoring/alertrule/{slow_rule.pk}/change/")
    assert page.status_code == 200
    assert 'name="keep_firing_seconds"' in page.content.decode()


def test_a_held_back_alert_that_cleared_is_not_sent_again_during_its_hold(slow_rule, http_endpoint):
    """A firing alert a maintenance window held back (no incident) is sent again every few
    minutes while it still fails; once its condition is false and it only waits out its
    hold time, the end of the window must not page for a fault that is gone."""
    assert sample(http_endpoint, 900, 0) == ["firing"]
    Incident.objects.all().delete()
    # What a window's suppression leaves: firing, delivered, no incident.
    AlertState.objects.filter(rule=slow_rule).update(
        incident_id=None, delivered_at=T0 - dt.timedelta(hours=1)
    )
    later = T0 + dt.timedelta(seconds=60)
    # Still failing: it is sent again and opens its incident.
    assert services.alerts_redeliver(now=later) == 1
    assert Incident.objects.count() == 1
    Incident.objects.all().delete()
    AlertState.objects.filter(rule=slow_rule).update(
        incident_id=None, delivered_at=T0 - dt.timedelta(hours=1)
    )
    # Cleared, inside its hold time: nothing is sent, nobody is paged.
    assert sample(http_endpoint, 100, 70) == []
    assert services.alerts_redeliver(now=T0 + dt.timedelta(seconds=90)) == 0
    assert not Incident.objects.exists()
