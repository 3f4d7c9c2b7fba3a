"""Registering systems in the admin: write-only secrets, Test connection, scheduled checks."""

import pytest

from opsportal.audit.models import AuditRecord
from opsportal.systems.models import PostgresDatabase, System
from opsportal.systems.services import systems_check_due
from opsportal.systems.tasks import check_due_systems
from tests import realsystems

pytestmark = pytest.mark.django_db

PG_PASSWORD = "s3cret-pg-password"


def pg_form(port: int, **overrides) -> dict:
    return {
        "name": "pg-main",
        "description": "",
        "critical": "on",
        "check_interval_seconds": "30",
        "host": "127.0.0.1",
        "port": str(port),
        "dbname": "postgres",
        "username": "postgres",
        "password": "",
        "sslmode": "prefer",
        "connect_timeout_seconds": "3",
        "container_name": "",
        **overrides,
    }


def test_password_is_write_only(staff_client, password_postgres_port):
    add = staff_client.post(
        "/admin/systems/postgresdatabase/add/",
        pg_form(password_postgres_port, password=PG_PASSWORD),
    )
    assert add.status_code == 302
    database = PostgresDatabase.objects.get(name="pg-main")
    change_url = f"/admin/systems/postgresdatabase/{database.pk}/change/"
    page = staff_client.get(change_url).content.decode()
    assert PG_PASSWORD not in page
    assert "A value is stored." in page

    # Saving again with the field left empty keeps the stored password.
    staff_client.post(change_url, pg_form(password_postgres_port, description="primary"))
    database.refresh_from_db()
    assert database.password == PG_PASSWORD
    assert database.description == "primary"

    # It is stored encrypted, not as typed.
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT password FROM systems_postgresdatabase WHERE system_ptr_id = %s", [database.pk]
        )
        stored = cursor.fetchone()[0]
    assert stored and PG_PASSWORD not in stored

    staff_client.post(change_url, pg_form(password_postgres_port, clear_password="on"))
    database.refresh_from_db()
    assert database.password == ""


def test_test_connection_button_reports_success_and_failure(staff_client, password_postgres_port):
    staff_client.post(
        "/admin/systems/postgresdatabase/add/",
        pg_form(password_postgres_port, password=PG_PASSWORD),
    )
    database = PostgresDatabase.objects.get(name="pg-main")
    url = f"/admin/systems/postgresdatabase/{database.pk}/test-connection/"
    page = staff_client.post(url, follow=True).content.decode()
    assert "Connection OK" in page
    database.refresh_from_db()
    assert database.last_check_ok is True

    staff_client.post(
        f"/admin/systems/postgresdatabase/{database.pk}/change/",
        pg_form(password_postgres_port, password="not-the-password"),
    )
    page = staff_client.post(url, follow=True).content.decode()
    assert "Connection failed" in page
    assert "rejected the password for user" in page
    assert "not-the-password" not in page
    assert staff_client.get(url).status_code == 405


def test_scheduled_check_stores_state_and_audits_only_changes(http_endpoint, http_server):
    assert check_due_systems.apply().get() == 1
    http_endpoint.refresh_from_db()
    assert http_endpoint.last_check_ok is True
    assert systems_check_due() == 0  # not due again before its interval
    operations = AuditRecord.objects.filter(action="operation")
    assert operations.count() == 0

    http_server.behaviour.status = 502
    System.objects.update(last_checked_at=None)
    systems_check_due()
    http_endpoint.refresh_from_db()
    assert http_endpoint.last_check_ok is False
    failing = operations.get()
    assert failing.source == "system"
    assert failing.message.startswith("Check failing:")


def test_scheduled_checks_run_concurrently(db):
    from opsportal.systems.models import HttpEndpoint

    with realsystems.silent_listener() as port:
        for i in range(4):
            HttpEndpoint.objects.create(
                name=f"hung-{i}", url=f"http://127.0.0.1:{port}/", timeout_seconds=1
            )
        import time

        started = time.monotonic()
        assert systems_check_due() == 4
        elapsed = time.monotonic() - started
    assert elapsed < 2.5
    assert set(System.objects.values_list("last_check_ok", flat=True)) == {False}


def test_a_scheduled_check_through_its_task_is_audited_as_the_schedule(http_endpoint, http_server):
    check_due_systems.apply().get()
    http_server.behaviour.status = 503
    System.objects.update(last_checked_at=None)
    assert check_due_systems.apply().get() == 1
    failing = AuditRecord.objects.get(action="operation")
    assert failing.source == "schedule"
    assert failing.actor_id is None
    assert "answered HTTP 503" in failing.message


@pytest.mark.parametrize(
    "fixture, break_it",
    [
        ("docker_engine", {"base_url": "unix:///nonexistent/docker.sock"}),
        ("redis_target", {"port": "closed"}),
        ("http_endpoint", {"url": "closed"}),
    ],
)
def test_test_connection_button_on_every_kind(staff_client, request, fixture, break_it):
    system = request.getfixturevalue(fixture)
    model = system._meta.model_name
    url = f"/admin/systems/{model}/{system.pk}/test-connection/"
    page = staff_client.post(url, follow=True).content.decode()
    assert "Connection OK" in page, page[-2000:]

    port = realsystems.free_port()
    changes = {
        field: port if value == "closed" and field == "port" else value
        for field, value in break_it.items()
    }
    if changes.get("url") == "closed":
        changes["url"] = f"http://127.0.0.1:{port}/"
    type(system).objects.filter(pk=system.pk).update(**changes)
    page = staff_client.post(url, follow=True).content.decode()
    assert "Connection failed" in page
    assert "not reachable" in page
    # A fresh copy: the fixture's own object keeps the real address for its cleanup.
    assert type(system).objects.get(pk=system.pk).last_check_ok is False
