"""Issue 16's proof: fault drills on the test Docker engine. For each of the runbook's
faults, the portal detects it through its real collection and rule evaluation, opens
exactly one incident with the right runbook, and the runbook's step, run from the overview's
firing alert through the admin as a seeded role (the operation's task executed for real),
fixes it on the real system in at most 3 form submissions.

  - a PostgreSQL server in a container (max_connections=20, 3 reserved) whose app role
    holds every slot it may have: "Restart database connections" frees them and a new app
    connection succeeds;
  - a slow HTTP API (busybox httpd + CGI in a container): "Restart slow services";
  - a crash-looping container (restart=always, `sleep 1; exit 1`): restarting it does not
    resolve the incident while it keeps crashing; it resolves only after a fixed container
    has run clean for the rule's hold time.

Rule windows and hold times are shortened on the rules (as an operator would edit them) so
the drill takes about two minutes, not the defaults' five."""

from __future__ import annotations

import datetime as dt
import time
import uuid

import psycopg
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.utils import timezone

from incidents.models import Incident, Status
from incidents.services import incidents_load_defaults
from opsportal.access import groups_load_defaults
from opsportal.monitoring import collectors
from opsportal.monitoring.models import AlertRule, AlertState
from opsportal.monitoring.services import fingerprint_for, monitoring_load_defaults
from opsportal.operations.tasks import execute_operation
from opsportal.systems.models import HttpEndpoint, PostgresDatabase
from tests import realsystems
from tests.conftest import TEST_IMAGE
from tests.drillkit import run_fix_from_overview, slow_api_container
from tests.limited_postgres import APP_PASSWORD, SUPERUSER_PASSWORD, postgres_in_container
from tests.monitoring.conftest import collect_now
from tests.signin import TwoFactorClient

pytestmark = [pytest.mark.docker]

HOLD_SECONDS = 8
MAX_SUBMISSIONS = 3


def execute(pk: int) -> None:
    execute_operation.apply(args=[pk])


def client_in(role: str) -> TwoFactorClient:
    user = get_user_model().objects.create_user(
        f"drill-{role.lower().replace(' ', '-')}", password="pw-drill-123!", is_staff=True
    )
    user.groups.add(Group.objects.get(name=role))
    client = TwoFactorClient()
    client.force_login(user)
    return client


def collect_until(predicate, *, timeout: float, step: float = 1.0):
    """Collection rounds (each stores samples and evaluates the rules) until `predicate`
    holds; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        collect_now()
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout} s")
        time.sleep(step)


def incident_of(rule_name: str, system, subject: str = "") -> Incident | None:
    rule = AlertRule.objects.get(name=rule_name)
    return Incident.objects.filter(
        alert_fingerprint=fingerprint_for(rule, system.pk, subject)
    ).first()


def assert_one_incident(rule_name: str, system, subject: str, runbook: str) -> Incident:
    rule = AlertRule.objects.get(name=rule_name)
    fingerprint = fingerprint_for(rule, system.pk, subject)
    incidents = list(Incident.objects.filter(alert_fingerprint=fingerprint))
    assert len(incidents) == 1, incidents
    assert incidents[0].runbook.name == runbook
    assert AlertState.objects.get(fingerprint=fingerprint).status == "firing"
    return incidents[0]


def resolved(incident: Incident) -> bool:
    incident.refresh_from_db()
    return incident.status == Status.RESOLVED


@pytest.fixture
def drill(db, settings, monkeypatch):
    groups_load_defaults()
    incidents_load_defaults()
    monitoring_load_defaults()
    # Shorter windows and hold times than the defaults (5 minutes each), set on the rules
    # and the windows the collector counts over, so the drill fits in `make test`.
    settings.MONITORING_WINDOW_SECONDS = 10
    monkeypatch.setattr(collectors, "RESTARTS_WINDOW", dt.timedelta(seconds=45))
    AlertRule.objects.update(for_seconds=0, keep_firing_seconds=HOLD_SECONDS)


def test_exhausted_database_in_a_container(drill, docker_client, docker_engine):
    name = f"opsportal-test-drill-pg-{uuid.uuid4().hex[:8]}"
    with postgres_in_container(docker_client, name=name) as server:
        database = PostgresDatabase.objects.create(
            name="drill-db", host="127.0.0.1", port=server.port, dbname="app", username="app",
            password=APP_PASSWORD, operator_username="postgres",
            operator_password=SUPERUSER_PASSWORD, docker_engine=docker_engine,
            container_name=name, connect_timeout_seconds=3,
        )  # fmt: skip
        collect_now()  # healthy baseline
        rule = "Database connection use above 90%"
        assert incident_of(rule, database) is None

        server.exhaust(server.usable_by_app)
        with pytest.raises(psycopg.OperationalError, match="remaining connection slots"):
            server.connect_as_app()
        collect_until(lambda: incident_of(rule, database), timeout=30)
        incident = assert_one_incident(rule, database, "", "Database Connection Issues")

        path = run_fix_from_overview(
            client_in("Database admins"),
            incident=incident,
            step_text="Restart database connections",
            execute=execute,
        )
        assert path.operation.status == "succeeded", path.operation.error
        assert path.operation.target_id == database.pk
        assert len(path.operation.result["terminated"]) == server.usable_by_app
        assert path.posts <= MAX_SUBMISSIONS
        server.release()
        server.connect_as_app().close()  # the application gets in again

        collect_until(lambda: resolved(incident), timeout=HOLD_SECONDS + 30)
        assert Incident.objects.filter(alert_fingerprint=incident.alert_fingerprint).count() == 1


def test_slow_api_in_a_container(drill, docker_client, docker_engine):
    port = realsystems.free_port()
    name = f"opsportal-test-drill-api-{uuid.uuid4().hex[:8]}"
    container = slow_api_container(docker_client, image=TEST_IMAGE, name=name, port=port)
    try:
        realsystems.wait_for_port(port)
        api = HttpEndpoint.objects.create(
            name="drill-api", url=f"http://127.0.0.1:{port}/cgi-bin/api", timeout_seconds=5,
            docker_engine=docker_engine, container_name=name,
        )  # fmt: skip
        rule = "API p95 above 500 ms"
        collect_now()
        assert incident_of(rule, api) is None

        assert container.exec_run(["sh", "-c", "echo 0.8 > /run/fault/delay"]).exit_code == 0
        collect_until(lambda: incident_of(rule, api), timeout=30, step=0.2)
        incident = assert_one_incident(rule, api, "", "High API Response Times")

        path = run_fix_from_overview(
            client_in("On-call engineers"),
            incident=incident,
            step_text="Restart slow services",
            # busybox httpd ignores SIGTERM: no use waiting the default 10 s for it
            overrides={"timeout_seconds": 1},
            execute=execute,
        )
        assert path.operation.status == "succeeded", path.operation.error
        assert path.operation.target_id == api.pk
        assert path.posts <= MAX_SUBMISSIONS
        realsystems.wait_for_port(port)
        # The restart cleared the fault: the API answers fast again, and once the slow
        # samples have left the p95 window and the hold time passed, the incident resolves.
        collect_until(lambda: resolved(incident), timeout=10 + HOLD_SECONDS + 40, step=0.5)
    finally:
        container.remove(force=True)


def test_crash_loop_stays_open_until_a_fixed_container_runs_clean(
    drill, docker_client, docker_engine
):
    name = f"opsportal-test-drill-crash-{uuid.uuid4().hex[:8]}"
    docker_client.containers.run(
        TEST_IMAGE, ["sh", "-c", "sleep 1; exit 1"], name=name, detach=True,
        restart_policy={"Name": "always"}, network_mode="host",
    )  # fmt: skip
    try:
        rule = "Container restarting repeatedly"
        collect_until(lambda: incident_of(rule, docker_engine, name), timeout=40)
        incident = assert_one_incident(rule, docker_engine, name, "Container Issues")

        path = run_fix_from_overview(
            client_in("On-call engineers"),
            incident=incident,
            step_text="Restart containers",
            overrides={"timeout_seconds": 1},
            execute=execute,
        )
        assert path.operation.status == "succeeded", path.operation.error
        assert path.operation.params["container"] == name  # chosen from the alert
        assert path.posts <= MAX_SUBMISSIONS

        # The restart reset Docker's restart count, but it keeps crashing: past the hold
        # time, the incident is still open and no second one was opened.
        keep_until = time.monotonic() + HOLD_SECONDS + 4
        while time.monotonic() < keep_until:
            collect_now()
            incident.refresh_from_db()
            assert incident.is_active, "resolved while the container still crash-loops"
            time.sleep(1)
        assert Incident.objects.filter(alert_fingerprint=incident.alert_fingerprint).count() == 1

        # The fixed version is deployed under the same name and runs clean.
        docker_client.containers.get(name).remove(force=True)
        docker_client.containers.run(
            TEST_IMAGE, ["sleep", "600"], name=name, detach=True,
            restart_policy={"Name": "always"}, network_mode="host",
        )  # fmt: skip
        fixed_at = timezone.now()
        collect_until(lambda: resolved(incident), timeout=45 + HOLD_SECONDS + 30, step=1)
        assert (incident.resolved_at - fixed_at).total_seconds() >= HOLD_SECONDS
        assert Incident.objects.filter(alert_fingerprint=incident.alert_fingerprint).count() == 1
    finally:
        docker_client.containers.get(name).remove(force=True)
