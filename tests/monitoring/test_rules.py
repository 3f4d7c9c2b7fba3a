"""Alert rules on real systems: firing, one incident per firing, clearing, suppression."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from incidents.models import Incident, Status
from incidents.services import incidents_load_defaults
from opsportal.monitoring import services
from opsportal.monitoring.models import AlertRule, AlertState, AlertStatus
from opsportal.systems.models import PostgresDatabase
from tests import realsystems
from tests.monitoring.conftest import SMALL_MAX_CONNECTIONS, collect_now, wait_until


@pytest.fixture
def defaults(db):
    """The runbooks and the default rules, as `load_defaults` creates them."""
    incidents_load_defaults()
    services.monitoring_load_defaults()


def rule_named(name: str, **changes) -> AlertRule:
    """A default rule, edited as an operator would in the admin."""
    rule = AlertRule.objects.get(name=name)
    for field, value in changes.items():
        setattr(rule, field, value)
    rule.full_clean()
    rule.save()
    return rule


def incidents_for(rule: AlertRule) -> list[Incident]:
    return list(
        Incident.objects.filter(alert_fingerprint__startswith=f"monitoring:rule-{rule.pk}:")
    )


def test_slow_api_fires_once_after_its_for_duration_and_resolves(
    defaults, http_endpoint, http_server, settings
):
    settings.MONITORING_WINDOW_SECONDS = 4
    rule = rule_named("API p95 above 500 ms", for_seconds=2)
    http_server.behaviour.delay_seconds = 0.6
    collect_now()
    state = AlertState.objects.get(rule=rule)
    assert state.status == AlertStatus.PENDING  # crossed the line, not yet for 2 s
    assert not incidents_for(rule)
    time.sleep(2.1)
    result = collect_now()
    assert [(s.rule_id, change) for s, change in result.transitions] == [(rule.pk, "firing")]
    for _ in range(3):  # still slow: more samples, no more incidents
        collect_now()
    (incident,) = incidents_for(rule)
    assert incident.runbook.name == "High API Response Times"
    assert incident.category == "api" and incident.severity == "sev2"
    assert list(incident.affected_systems.all()) == [http_endpoint.system_ptr]
    # The evidence is the samples that crossed the line.
    assert "http_latency_p95_ms" in incident.symptoms
    assert incident.symptoms.count("  ") >= 2
    state.refresh_from_db()
    assert state.status == AlertStatus.FIRING and state.incident_id == incident.pk

    http_server.behaviour.delay_seconds = 0
    time.sleep(4.1)  # the slow probes leave the rolling window
    result = collect_now()
    assert [change for _, change in result.transitions] == ["resolved"]
    incident.refresh_from_db()
    assert incident.status == Status.RESOLVED  # the rule resolves its incident itself
    assert incident.timeline.filter(message__contains="Alert resolved").exists()


def test_api_error_rate_from_a_failing_endpoint(defaults, http_endpoint, http_server):
    rule_named("API error rate above 5%", for_seconds=0)
    http_server.behaviour.status = 500
    collect_now()
    (incident,) = Incident.objects.all()
    assert "API error rate above 5%" in incident.title and http_endpoint.name in incident.title


@pytest.mark.docker
def test_crash_looping_container_opens_a_container_issue(defaults, docker_engine, run_container):
    looping = run_container(["sh", "-c", "sleep 0.3; exit 1"], restart_policy={"Name": "always"})
    collect_now()
    first = looping.attrs["RestartCount"]
    looping.reload()
    first = looping.attrs["RestartCount"]
    wait_until(lambda: (looping.reload() or looping.attrs["RestartCount"]) >= first + 4, 60)
    collect_now()
    collect_now()
    rule = AlertRule.objects.get(name="Container restarting repeatedly")
    # Only this test's container: other crash-looping containers on the shared engine
    # fire too (their restarts count from their creation).
    (incident,) = [i for i in incidents_for(rule) if looping.name in i.title]
    assert incident.runbook.name == "Container Issues"
    assert incident.category == "container"


def test_connection_pressure_on_real_postgresql(defaults, small_postgres, open_connections):
    rule = rule_named("Database connection use above 90%", for_seconds=0)
    collect_now()
    assert not incidents_for(rule)
    held = open_connections(small_postgres.port, count=SMALL_MAX_CONNECTIONS - 1)
    collect_now()
    (incident,) = incidents_for(rule)
    assert incident.runbook.name == "Database Connection Issues"
    assert "pg_connections_used_percent" in incident.symptoms
    for conn in held:
        conn.close()
    collect_now()
    incident.refresh_from_db()
    assert incident.status == Status.RESOLVED


def test_connection_errors_open_database_connection_issues(defaults):
    dead = PostgresDatabase.objects.create(
        name="dead-postgres",
        host="127.0.0.1",
        port=realsystems.free_port(),
        dbname="postgres",
        connect_timeout_seconds=1,
    )
    collect_now()
    collect_now()
    rule = AlertRule.objects.get(name="Database connection errors")
    (incident,) = incidents_for(rule)
    assert incident.severity == "sev1" and incident.runbook.name == "Database Connection Issues"
    assert dead.name in incident.title


def test_suppressed_during_a_maintenance_window_then_opened_after_it(
    defaults, http_endpoint, http_server, superuser
):
    from maintenance.models import MaintenanceWindow
    from maintenance.services import window_finish, window_schedule, window_start

    rule_named("API error rate above 5%", for_seconds=0)
    now = timezone.now()
    window = window_schedule(
        window=MaintenanceWindow(
            title="API upgrade", starts_at=now + dt.timedelta(minutes=1),
            ends_at=now + dt.timedelta(hours=1),
        ),
        systems=[http_endpoint.system_ptr],
        actor=superuser,
    )  # fmt: skip
    window_start(window=window, actor=superuser, override_reason="drill")
    http_server.behaviour.status = 503
    collect_now()
    state = AlertState.objects.get()
    assert state.status == AlertStatus.FIRING and state.incident_id is None
    assert not Incident.objects.exists()

    window_finish(window=window, actor=superuser)
    # Still failing after the window: the alert is sent again and now opens an incident.
    services.alerts_redeliver(now=timezone.now() + dt.timedelta(seconds=301))
    (incident,) = Incident.objects.all()
    state.refresh_from_db()
    assert state.incident_id == incident.pk


def test_rule_on_a_metric_that_does_not_exist(defaults, http_endpoint, staff_client):
    with pytest.raises(ValidationError, match="No metric named 'api_happiness'"):
        AlertRule(name="bad", metric="api_happiness", threshold=1).full_clean()
    # A row that names one anyway (edited in the database, or a metric renamed later) is
    # skipped by the evaluator and flagged in the admin; the round still completes.
    bad = AlertRule.objects.create(name="Happiness", metric="api_happiness", threshold=1)
    result = collect_now()
    assert [c.ok for c in result.collected] == [True]
    assert not AlertState.objects.filter(rule=bad).exists()
    page = staff_client.get("/admin/monitoring/alertrule/")
    assert "this rule never fires" in page.content.decode()


def test_clock_skew_neither_fires_early_nor_breaks_the_for_duration(defaults, http_endpoint):
    rule = rule_named("API p95 above 500 ms", for_seconds=60)
    t0 = timezone.now()
    key = (http_endpoint.pk, "http_latency_p95_ms", "")
    systems = {http_endpoint.pk: http_endpoint}
    services.alerts_evaluate(values={key: (900.0, t0)}, systems=systems)
    # The next sample claims to be from before the first (a clock stepped back).
    services.alerts_evaluate(values={key: (900.0, t0 - dt.timedelta(minutes=5))}, systems=systems)
    state = AlertState.objects.get(rule=rule)
    assert state.status == AlertStatus.PENDING and state.since == t0
    services.alerts_evaluate(values={key: (900.0, t0 + dt.timedelta(seconds=61))}, systems=systems)
    state.refresh_from_db()
    assert state.status == AlertStatus.FIRING
    assert [v for _, v in state.evidence] == [900.0, 900.0, 900.0]


def test_an_alert_incidents_refused_is_delivered_again(defaults, http_endpoint, http_server):
    rule = rule_named("API error rate above 5%", for_seconds=0)
    AlertRule.objects.filter(pk=rule.pk).update(severity="sev9")  # not a severity incidents know
    http_server.behaviour.status = 500
    collect_now()
    state = AlertState.objects.get(rule=rule)
    assert state.status == AlertStatus.FIRING and not state.delivered
    assert not Incident.objects.exists()
    rule_named("API error rate above 5%", severity="sev2")
    collect_now()
    state.refresh_from_db()
    assert state.delivered and Incident.objects.get().pk == state.incident_id


def test_default_rules_load_once_and_keep_edits(defaults):
    rule_named("API p95 above 500 ms", threshold=800)
    services.monitoring_load_defaults()
    assert AlertRule.objects.get(name="API p95 above 500 ms").threshold == 800
    assert AlertRule.objects.count() == len(services.DEFAULT_RULES)
    for rule in AlertRule.objects.all():
        rule.full_clean()
