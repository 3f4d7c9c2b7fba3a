"""Issue 16, "the operator's way through an incident": from a firing alert on the overview
or from the incident, the runbook's step opens with the alert's system and container
chosen, only systems the operation applies to are offered, and a successful fix offers
"mark mitigated" on the spot."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.utils import timezone

from incidents.models import Incident, IncidentStep, Status
from incidents.services import incident_open, incidents_load_defaults
from opsportal.access import groups_load_defaults
from opsportal.monitoring.models import AlertState
from opsportal.monitoring.services import alerts_evaluate, monitoring_load_defaults
from opsportal.operations.forms import PREFIX
from opsportal.operations.models import OperationStatus
from opsportal.operations.tasks import execute_operation
from opsportal.systems.models import DockerEngine, HttpEndpoint, PostgresDatabase
from tests.previewing import preview_token_of
from tests.signin import TwoFactorClient


def client_in(role: str, username: str = "") -> tuple[TwoFactorClient, object]:
    user = get_user_model().objects.create_user(
        username or role.lower().replace(" ", "-"), password="role-pass-123", is_staff=True
    )
    user.groups.add(Group.objects.get(name=role))
    client = TwoFactorClient()
    client.force_login(user)
    return client, user


def target_choices(response) -> set[int]:
    return {
        int(str(value)) for value, _ in response.context["form"].fields["target"].choices if value
    }


@pytest.fixture
def defaults(db):
    groups_load_defaults()
    incidents_load_defaults()
    monitoring_load_defaults()


def fire_crash_loop(engine: DockerEngine, container: str) -> AlertState:
    """The restart rule fires on `container` through the real rule evaluation."""
    alerts_evaluate(
        values={(engine.pk, "container_restarts_5m", container): (5.0, timezone.now())},
        systems={engine.pk: engine},
    )
    return AlertState.objects.get(system=engine, subject=container, status="firing")


def test_firing_alert_links_to_the_fix_with_system_and_container_chosen(defaults, docker_host):
    engine = DockerEngine.objects.create(name="web-host", base_url=docker_host)
    # In scope of the incident (it runs on the affected engine) and a container target.
    HttpEndpoint.objects.create(
        name="api-in-container", url="http://127.0.0.1:9/", docker_engine=engine,
        container_name="api-1",
    )  # fmt: skip
    state = fire_crash_loop(engine, "worker-1")
    incident = Incident.objects.get(pk=state.incident_id)
    assert incident.runbook.name == "Container Issues"
    client, _ = client_in("On-call engineers")

    overview = client.get("/admin/")
    html = overview.content.decode()
    restart = IncidentStep.objects.get(incident=incident, text="Restart containers")
    link = f"/admin/incidents/incident/{incident.pk}/steps/{restart.pk}/run/"
    assert f'href="{link}?target={engine.pk}&amp;container=worker-1"' in html

    page = client.get(f"{link}?target={engine.pk}&container=worker-1")
    assert page.status_code == 200
    form = page.context["form"]
    assert form.initial["target"] == engine.pk
    assert form.fields[PREFIX + "container"].initial == "worker-1"
    assert form.fields[PREFIX + "timeout_seconds"].initial == 10  # the typed default
    # Offered: the engine and the API in its container; both are container targets.
    assert target_choices(page) == {
        engine.pk,
        HttpEndpoint.objects.get(name="api-in-container").pk,
    }

    # From the incident page's "Run" (no parameters in the link): the same, from the alert
    # the incident remembers.
    from_incident = client.get(link)
    assert from_incident.context["form"].initial["target"] == engine.pk
    assert from_incident.context["form"].fields[PREFIX + "container"].initial == "worker-1"
    assert 'value="worker-1"' in from_incident.content.decode()


def test_system_list_holds_only_the_kinds_the_operation_applies_to(defaults, docker_host):
    engine = DockerEngine.objects.create(name="db-host", base_url=docker_host)
    database = PostgresDatabase.objects.create(
        name="app-db", host="127.0.0.1", port=5432, dbname="app", username="app",
        docker_engine=engine, container_name="pg-1",
    )  # fmt: skip
    api = HttpEndpoint.objects.create(name="api", url="http://127.0.0.1:9/")
    client, user = client_in("Database admins")
    incident = incident_open(
        title="Too many connections",
        severity="sev2",
        category="database",
        reporter=user,
        affected_systems=[engine, database, api],
        runbook_name="Database Connection Issues",
    )
    step = IncidentStep.objects.get(incident=incident, text="Restart database connections")
    page = client.get(f"/admin/incidents/incident/{incident.pk}/steps/{step.pk}/run/")
    assert page.status_code == 200
    assert target_choices(page) == {database.pk}
    # An alert on the database's container (engine + container name) chooses the database.
    prefilled = client.get(
        f"/admin/incidents/incident/{incident.pk}/steps/{step.pk}/run/"
        f"?target={engine.pk}&container=pg-1"
    )
    assert prefilled.context["form"].initial["target"] == database.pk
    assert prefilled.context["form"].fields[PREFIX + "idle_seconds"].initial == 0


@pytest.mark.docker
def test_successful_fix_offers_mark_mitigated_on_the_spot(defaults, docker_engine, run_container):
    container = run_container("sleep 300")
    state = fire_crash_loop(docker_engine, container.name)
    incident = Incident.objects.get(pk=state.incident_id)
    client, _ = client_in("On-call engineers")
    step = IncidentStep.objects.get(incident=incident, text="Restart containers")
    run_url = f"/admin/incidents/incident/{incident.pk}/steps/{step.pk}/run/"
    page = client.get(f"{run_url}?target={docker_engine.pk}&container={container.name}")
    assert (
        "mark-mitigated"
        not in client.get(f"/admin/incidents/incident/{incident.pk}/change/").content.decode()
    )

    form = page.context["form"]
    data = {name: form[name].value() for name in form.fields}
    data = {k: v for k, v in data.items() if v is not None}
    data["reason"] = "crash loop"
    data[PREFIX + "timeout_seconds"] = 1
    # The page showed the container it restarts; the stop timeout is not part of that.
    data["preview_token"] = preview_token_of(page)
    submitted = client.post(run_url, data)
    assert submitted.status_code == 302, submitted.context["form"].errors
    step.refresh_from_db()
    operation = step.last_operation
    assert operation.params["container"] == container.name
    execute_operation.apply(args=[operation.pk])
    operation.refresh_from_db()
    assert operation.status == OperationStatus.SUCCEEDED, operation.error

    incident_page = client.get(f"/admin/incidents/incident/{incident.pk}/change/").content.decode()
    assert 'id="mark-mitigated"' in incident_page
    done = client.post(f"/admin/incidents/incident/{incident.pk}/mark-mitigated/", {
        "note": "Restart containers succeeded"})  # fmt: skip
    assert done.status_code == 302
    incident.refresh_from_db()
    assert incident.status == Status.MITIGATED
    assert incident.acknowledged_at is not None  # the open incident was acknowledged on the way
    # Once mitigated, it is not offered again.
    assert (
        'id="mark-mitigated"'
        not in client.get(f"/admin/incidents/incident/{incident.pk}/change/").content.decode()
    )


def test_a_malformed_link_opens_the_run_page_without_a_choice(defaults, docker_host):
    """?target= that is not a plain number (a superscript digit, a huge one, text) is
    ignored, not a server error; an over-long container name is cut."""
    engine = DockerEngine.objects.create(name="web-host", base_url=docker_host)
    state = fire_crash_loop(engine, "worker-1")
    incident = Incident.objects.get(pk=state.incident_id)
    client, _ = client_in("On-call engineers")
    restart = IncidentStep.objects.get(incident=incident, text="Restart containers")
    link = f"/admin/incidents/incident/{incident.pk}/steps/{restart.pk}/run/"
    for target in ("²", "9" * 40, "abc", "-1"):
        page = client.get(link, {"target": target, "container": "x" * 5000})
        assert page.status_code == 200, target


def test_free_form_parameters_are_bounded():
    from opsportal.operations.kinds import InvalidParameters, clean_params

    with pytest.raises(InvalidParameters, match="at most 255 characters"):
        clean_params("db_terminate_idle", {"application_name": "a" * 256})
    with pytest.raises(InvalidParameters, match="positive numbers"):
        clean_params("db_terminate_queries", {"pids": [2**31]})
    with pytest.raises(InvalidParameters, match="at most 100 numbers"):
        clean_params("db_terminate_queries", {"pids": list(range(1, 102))})
    assert clean_params("db_terminate_queries", {"pids": "12 34"})["pids"] == [12, 34]
