"""The run page of a changing step shows what it would do now, read live, and runs what
the person confirmed; a preview of an unreachable system says why it failed and the step
then needs a reason (issue 14, "Preview before acting" and its bad input)."""

import html

import psycopg
import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from incidents.models import IncidentStep
from incidents.services import incident_open
from opsportal.access import groups_load_defaults
from opsportal.operations.models import Operation, OperationStatus
from opsportal.operations.tasks import execute_operation
from opsportal.systems.models import PostgresDatabase
from tests.previewing import preview_token_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def dba_client(client, engineer):
    groups_load_defaults()
    engineer.groups.add(Group.objects.get(name="Database admins"))
    client.force_login(engineer)
    return client


def restart_connections_url(engineer, database) -> str:
    incident = incident_open(
        title=f"Too many connections on {database.name}",
        severity="sev2",
        category="database",
        reporter=engineer,
        affected_systems=[database],
        runbook_name="Database Connection Issues",
    )
    step = IncidentStep.objects.get(incident=incident, text="Restart database connections")
    return reverse("admin:incidents_incident_step_run", args=[incident.pk, step.pk])


def form(database, application: str, reason: str = "pool leak") -> dict:
    return {
        "target": database.pk,
        "param_application_name": application,
        "param_user": "",
        "param_state": "any",
        "param_idle_seconds": "0",
        "reason": reason,
    }


def test_the_page_previews_the_connections_and_runs_what_was_confirmed(
    dba_client, engineer, runbooks, postgres_target, target_database_dsn
):
    url = restart_connections_url(engineer, postgres_target)
    page = dba_client.get(url)
    assert 'id="operation-preview"' in page.content.decode()
    with (
        psycopg.connect(target_database_dsn, application_name="leaky-page") as first,
        psycopg.connect(target_database_dsn, application_name="leaky-page") as second,
    ):
        pids = {first.info.backend_pid, second.info.backend_pid}
        # Submitted without having seen a preview for these parameters: shown, not run.
        shown = dba_client.post(url, form(postgres_target, "leaky-page"))
        assert shown.status_code == 200 and not Operation.objects.exists()
        text = shown.content.decode()
        assert "This is what it does now: check it and confirm again." in text
        assert "2 connections of test-postgres would be terminated." in text
        for pid in pids:
            assert f"<td>{pid}</td>" in text
        token = preview_token_of(shown)
        # Other parameters than the preview's: previewed again, still not run.
        other = dba_client.post(
            url, {**form(postgres_target, "another-app"), "preview_token": token}
        )
        assert "The preview you saw was for another system or other parameters" in (
            html.unescape(other.content.decode())
        )
        assert "0 connections of test-postgres would be terminated." in other.content.decode()
        assert not Operation.objects.exists()
        confirmed = dba_client.post(
            url, {**form(postgres_target, "leaky-page"), "preview_token": token}
        )
        assert confirmed.status_code == 302, confirmed.content.decode()[:2000]
        operation = Operation.objects.get()
        assert {row["pid"] for row in operation.preview["rows"]} == pids
        execute_operation.apply(args=[operation.pk])
        operation.refresh_from_db()
        assert operation.status == OperationStatus.SUCCEEDED, operation.error
        assert {row["pid"] for row in operation.result["terminated"]} == pids
        assert "Nothing differed from the preview you confirmed." in operation.output


def test_an_unreachable_database_fails_the_preview_and_a_reason_is_required(
    dba_client, engineer, runbooks
):
    closed = PostgresDatabase.objects.create(
        name="gone-db",
        host="127.0.0.1",
        port=1,
        dbname="app",
        username="app",
        connect_timeout_seconds=2,
    )
    url = restart_connections_url(engineer, closed)
    page = dba_client.get(url)
    text = html.unescape(page.content.decode())
    assert 'id="preview-failed"' in text
    assert "The preview failed: PostgreSQL gone-db (127.0.0.1:1/app) is not reachable" in text
    token = preview_token_of(page)
    refused = dba_client.post(url, {**form(closed, "", reason=""), "preview_token": token})
    assert refused.status_code == 200
    assert refused.context["form"].errors["reason"] == [
        "The preview failed (PostgreSQL gone-db (127.0.0.1:1/app) is not reachable: "
        + refused.context["preview"]["failed"].split("is not reachable: ", 1)[1]
        + "), so nobody has seen what this will do: give a reason to run it anyway."
    ]
    assert not Operation.objects.exists()
    ran = dba_client.post(
        url,
        {**form(closed, "", reason="pool stuck; the database may be back"), "preview_token": token},
    )
    assert ran.status_code == 302, ran.content.decode()[:2000]
    operation = Operation.objects.get()
    assert "not reachable" in operation.preview["failed"]
    assert operation.reason == "pool stuck; the database may be back"
