"""The run page of a runbook step asks for each parameter as a typed field with the
runbook's value filled in, never as JSON (issue 16, failure 3), and the database step run
from it fixes an exhausted database for real (failure 1, through the incident's page)."""

import importlib

import psycopg
import pytest
from django.apps import apps
from django.contrib.auth.models import Group
from django.urls import reverse

from incidents.models import IncidentStep, RunbookStep
from incidents.services import incident_open
from opsportal.access import groups_load_defaults
from opsportal.operations.kinds import KINDS
from opsportal.operations.models import Operation, OperationStatus
from opsportal.operations.tasks import execute_operation
from opsportal.systems.models import PostgresDatabase
from tests.limited_postgres import APP_PASSWORD, SUPERUSER_PASSWORD
from tests.previewing import post_confirmed


@pytest.fixture
def dba_client(client, engineer):
    """A member of the seeded "Database admins" role, as load_defaults makes it."""
    groups_load_defaults()
    engineer.groups.add(Group.objects.get(name="Database admins"))
    client.force_login(engineer)
    return client


@pytest.fixture
def app_database(db, limited_postgres) -> PostgresDatabase:
    return PostgresDatabase.objects.create(
        name="app-db",
        host="127.0.0.1",
        port=limited_postgres.port,
        dbname=limited_postgres.dbname,
        username=limited_postgres.app_user,
        password=APP_PASSWORD,
        operator_username="postgres",
        operator_password=SUPERUSER_PASSWORD,
        connect_timeout_seconds=3,
    )


def restart_step(engineer, database) -> IncidentStep:
    incident = incident_open(
        title="Too many connections on app-db",
        severity="sev2",
        category="database",
        reporter=engineer,
        affected_systems=[database],
        runbook_name="Database Connection Issues",
    )
    return IncidentStep.objects.get(incident=incident, text="Restart database connections")


def test_the_run_page_shows_typed_fields_with_the_runbooks_values(
    dba_client, engineer, runbooks, app_database
):
    step = restart_step(engineer, app_database)
    url = reverse("admin:incidents_incident_step_run", args=[step.incident_id, step.pk])
    response = dba_client.get(url)
    page = response.content.decode()
    assert response.status_code == 200
    form = response.context["form"]
    assert "params" not in form.fields and "<textarea" not in page
    assert form["param_idle_seconds"].value() == 0  # the runbook's value: however briefly
    assert form["param_state"].value() == "any"
    assert form["param_application_name"].value() == ""
    assert 'type="number" name="param_idle_seconds"' in page
    assert '<select name="param_state"' in page
    assert "idle in a transaction (left open)" in page  # the choices' words, not codes
    assert 'name="param_application_name"' in page and 'name="param_user"' in page


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_gets_a_typed_form_and_no_json_box(kind):
    from incidents.forms import StepRunForm

    form = StepRunForm(kind=kind)
    assert "params" not in form.fields
    assert [n for n in form.fields if n.startswith("param_")] == [
        f"param_{name}" for name in KINDS[kind].params
    ]


def test_a_wrong_typed_value_is_refused_next_to_its_field(
    dba_client, engineer, runbooks, app_database
):
    step = restart_step(engineer, app_database)
    url = reverse("admin:incidents_incident_step_run", args=[step.incident_id, step.pk])
    response = dba_client.post(
        url,
        {
            "target": app_database.pk,
            "param_state": "sleeping",
            "param_idle_seconds": "soon",
            "reason": "pool leak",
        },
    )
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert "param_state" in errors and "param_idle_seconds" in errors
    assert not Operation.objects.exists()


def test_the_step_posted_with_typed_fields_frees_the_exhausted_database(
    dba_client, engineer, runbooks, app_database, limited_postgres
):
    leaked = limited_postgres.exhaust(limited_postgres.usable_by_app)
    with pytest.raises(psycopg.OperationalError, match="remaining connection slots"):
        limited_postgres.connect_as_app()
    step = restart_step(engineer, app_database)
    url = reverse("admin:incidents_incident_step_run", args=[step.incident_id, step.pk])
    response = post_confirmed(
        dba_client,
        url,
        {
            "target": app_database.pk,
            "param_application_name": "leaky-app",
            "param_user": "",
            "param_state": "any",
            "param_idle_seconds": "0",
            "reason": "leaking pool holds every connection",
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    operation = Operation.objects.get()
    assert operation.params == {
        "application_name": "leaky-app",
        "user": "",
        "state": "any",
        "idle_seconds": 0.0,
    }
    execute_operation.apply(args=[operation.pk])  # the worker's part, in this process
    operation.refresh_from_db()
    assert operation.status == OperationStatus.SUCCEEDED, operation.error
    assert len(operation.result["terminated"]) == len(leaked) == 17
    assert "Connected by operator credential as 'postgres'" in operation.output
    limited_postgres.connect_as_app().close()
    page = dba_client.get(
        reverse("admin:incidents_incident_change", args=[step.incident_id])
    ).content.decode()
    assert "Terminated 17 connections of application" in page


def test_the_loaded_runbook_step_moves_from_300_to_0_seconds(runbooks):
    step = RunbookStep.objects.get(text="Restart database connections")
    RunbookStep.objects.filter(pk=step.pk).update(operation_params={"idle_seconds": 300})
    migration = importlib.import_module(
        "incidents.migrations.0005_restart_connections_step_idle_from_zero"
    )
    migration.idle_from_zero(apps, None)
    step.refresh_from_db()
    assert step.operation_params == {"idle_seconds": 0}


def test_whose_connections_to_end_is_offered_from_the_last_summary(
    dba_client, engineer, runbooks, app_database, limited_postgres
):
    from opsportal.operations.services import operation_request

    limited_postgres.exhaust(3, application_name="leaky-app")
    limited_postgres.exhaust(1, application_name="<b>evil</b>")
    limited_postgres.exhaust(1, application_name="opsportal")  # e.g. a backup's pg_dump
    step = restart_step(engineer, app_database)
    summary = operation_request(
        kind="db_connections", target=app_database, params={}, actor=engineer, reason="check"
    )
    execute_operation.apply(args=[summary.pk])
    url = reverse("admin:incidents_incident_step_run", args=[step.incident_id, step.pk])
    page = dba_client.get(url).content.decode()
    assert 'list="id_param_application_name-suggestions"' in page
    assert '<option value="leaky-app">' in page
    assert "Seen in the last connection summary: leaky-app, &lt;b&gt;evil&lt;/b&gt;" in page
    assert "<b>evil</b>" not in page
    assert '<option value="opsportal">' not in page  # the portal's own is never a target
    assert '<option value="app">' in page  # the user, for the "Database user" field
