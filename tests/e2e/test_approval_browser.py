"""Two-person approval in the browser (issue 14): a DBA asks to terminate every idle
connection of a database from the incident's runbook step; it waits as "awaiting approval"
and a second DBA, following the link the notification carries, approves it with a reason;
it then runs on a real worker and the request, the approval and the result are on the
incident's timeline."""

import re
import time

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from incidents.services import incident_open, incidents_load_defaults
from opsportal.access import groups_load_defaults
from opsportal.operations.models import Operation, OperationStatus
from opsportal.operations.services import operations_load_defaults
from opsportal.people.models import Notification
from opsportal.people.services import people_load_defaults
from opsportal.systems.models import PostgresDatabase
from tests.limited_postgres import APP_PASSWORD, SUPERUSER_PASSWORD
from tests.signin import sign_in
from tests.workers import celery_worker, clear_queue

pytestmark = [pytest.mark.browser]


def test_request_is_approved_by_a_second_dba_then_runs_onto_the_timeline(
    live_server, page, browser, transactional_db, limited_postgres
):
    groups_load_defaults()
    people_load_defaults()
    incidents_load_defaults()
    operations_load_defaults()  # "terminate all connections" needs approval by default
    users = {}
    for name in ("dana", "dev"):
        users[name] = get_user_model().objects.create_user(
            name, f"{name}@example.com", f"pw-{name}-123!", is_staff=True
        )
        users[name].groups.add(Group.objects.get(name="Database admins"))
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
        reporter=users["dana"],
        affected_systems=[database],
        runbook_name="Database Connection Issues",
    )
    limited_postgres.exhaust(limited_postgres.usable_by_app)
    clear_queue(settings.CELERY_BROKER_URL)

    # The requester: every idle connection, no application filter, so it waits.
    sign_in(page, live_server.url, "dana", "pw-dana-123!")
    page.goto(f"{live_server.url}/admin/incidents/incident/{incident.pk}/change/")
    row = page.locator(".checklist-step", has_text="Restart database connections")
    row.locator("a.button", has_text="Run").click()
    page.wait_for_selector("#run-step-approval")
    page.fill("#id_reason", "the pool leaks; end every idle connection")
    page.click("#confirm-run")
    page.wait_for_selector("text=awaits a second person's approval")
    operation = Operation.objects.get(kind="db_terminate_idle")
    assert operation.status == OperationStatus.AWAITING

    # The second DBA follows the link in their notification.
    notification = Notification.objects.get(recipient="dev@example.com")
    link = re.search(r"/admin/approvals/approvalrequest/\d+/change/", notification.body).group(0)
    second = browser.new_context(viewport={"width": 1400, "height": 1000})
    second.set_default_timeout(15_000)
    approver = second.new_page()
    try:
        sign_in(approver, live_server.url, "dev", "pw-dev-123!")
        with celery_worker():
            approver.goto(f"{live_server.url}{link}")
            approver.fill("#decide-form #id_reason", "checked the connection summary")
            approver.click("#approve")
            approver.wait_for_selector("text=It runs now.")

            page.goto(f"{live_server.url}/admin/incidents/incident/{incident.pk}/change/")
            deadline = time.monotonic() + 60
            timeline = ""
            while time.monotonic() < deadline:
                timeline = page.inner_text("#incident-timeline")
                if re.search(r"Terminate idle connections on app-db (succeeded|failed)", timeline):
                    break
                time.sleep(1)
                page.reload()
    finally:
        second.close()
    assert "awaiting approval by a second person" in timeline, timeline
    assert "Approved (dev)" in timeline and "checked the connection summary" in timeline
    assert "Terminate idle connections on app-db succeeded" in timeline, timeline
    limited_postgres.connect_as_app().close()
