"""A database admin frees a database whose application holds every connection, from the
incident's page in the browser: the runbook's "Restart database connections" step opens
with typed fields (the runbook's values filled in), runs on a real worker through the
operator credential, and a new application connection succeeds (issue 16)."""

import re
import time

import psycopg
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from incidents.services import incident_open, incidents_load_defaults
from opsportal.access import groups_load_defaults
from opsportal.people.models import Responsibility, Team
from opsportal.people.services import people_load_defaults
from opsportal.systems.models import PostgresDatabase
from tests.limited_postgres import APP_PASSWORD, SUPERUSER_PASSWORD
from tests.signin import sign_in
from tests.workers import celery_worker, clear_queue

pytestmark = [pytest.mark.browser]


def test_dba_restarts_the_leaking_apps_connections_from_the_incident(
    live_server, page, transactional_db, limited_postgres
):
    groups_load_defaults()
    people_load_defaults()
    incidents_load_defaults()
    dba = get_user_model().objects.create_user("dana", "dana@example.com", "pw-dana-123!")
    dba.is_staff = True
    dba.save()
    dba.groups.add(Group.objects.get(name="Database admins"))
    Team.objects.get(responsibility=Responsibility.DATABASE).members.add(dba)
    database = PostgresDatabase.objects.create(
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
    incident = incident_open(
        title="Too many connections on app-db",
        severity="sev2",
        category="database",
        reporter=dba,
        affected_systems=[database],
        runbook_name="Database Connection Issues",
    )
    limited_postgres.exhaust(limited_postgres.usable_by_app)
    with pytest.raises(psycopg.OperationalError, match="remaining connection slots"):
        limited_postgres.connect_as_app()
    clear_queue(settings.CELERY_BROKER_URL)

    sign_in(page, live_server.url, "dana", "pw-dana-123!")

    with celery_worker():
        page.goto(f"{live_server.url}/admin/incidents/incident/{incident.pk}/change/")
        row = page.locator(".checklist-step", has_text="Restart database connections")
        row.locator("a.button", has_text="Run").click()
        page.wait_for_selector("#run-step-form")
        assert page.locator("#run-step-form textarea").count() == 0  # no JSON box
        assert page.input_value("#id_param_idle_seconds") == "0"  # the runbook's value
        assert page.get_attribute("#id_param_idle_seconds", "type") == "number"
        assert page.input_value("#id_param_state") == "any"
        page.fill("#id_param_application_name", "leaky-app")
        page.fill("#id_reason", "a leaking pool holds every connection")
        # The page opened with the preview of every application's idle connections; for
        # leaky-app alone it shows what it would end now, and runs on the second click.
        page.click("#confirm-run")
        page.wait_for_selector("#preview-note")
        assert "17 connections of app-db would be terminated" in page.inner_text(
            "#operation-preview"
        )
        assert page.locator("#preview-rows tbody tr").count() == 17
        page.click("#confirm-run")
        page.wait_for_selector("#incident-timeline")

        deadline = time.monotonic() + 60
        timeline = ""
        while time.monotonic() < deadline:
            timeline = page.inner_text("#incident-timeline")
            if re.search(r"Terminate idle connections on app-db (succeeded|failed)", timeline):
                break
            time.sleep(1)
            page.reload()
    assert "Terminate idle connections on app-db succeeded" in timeline, timeline
    assert "Terminated 17 connections of application 'leaky-app'" in timeline, timeline
    limited_postgres.connect_as_app().close()
