"""A PostgreSQL registration's operator credential (issue 16): write-only like the password,
stored encrypted, never audited or shown, and checked by Test connection before an incident
needs it."""

import pytest
from django.db import connection

from opsportal.audit.models import AuditRecord
from opsportal.systems.models import PostgresDatabase
from tests.limited_postgres import APP_PASSWORD, SUPERUSER_PASSWORD

pytestmark = pytest.mark.django_db


def form(server, **overrides) -> dict:
    return {
        "name": "app-db",
        "description": "",
        "critical": "on",
        "check_interval_seconds": "30",
        "host": "127.0.0.1",
        "port": str(server.port),
        "dbname": server.dbname,
        "username": server.app_user,
        "password": APP_PASSWORD,
        "sslmode": "prefer",
        "connect_timeout_seconds": "3",
        "operator_username": "postgres",
        "operator_password": SUPERUSER_PASSWORD,
        "container_name": "",
        **overrides,
    }


def test_operator_password_is_write_only_encrypted_and_never_audited(
    staff_client, limited_postgres
):
    add = staff_client.post("/admin/systems/postgresdatabase/add/", form(limited_postgres))
    assert add.status_code == 302, add.content.decode()[:3000]
    database = PostgresDatabase.objects.get(name="app-db")
    assert database.operator_password == SUPERUSER_PASSWORD
    change_url = f"/admin/systems/postgresdatabase/{database.pk}/change/"
    page = staff_client.get(change_url).content.decode()
    assert SUPERUSER_PASSWORD not in page
    assert 'name="operator_password"' in page and 'name="clear_operator_password"' in page
    assert page.count("A value is stored.") == 2  # the password and the operator's

    # Saved again with both secret fields empty: both kept.
    staff_client.post(
        change_url, form(limited_postgres, password="", operator_password="", description="x")
    )
    database.refresh_from_db()
    assert (database.password, database.operator_password) == (APP_PASSWORD, SUPERUSER_PASSWORD)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT operator_password FROM systems_postgresdatabase WHERE system_ptr_id = %s",
            [database.pk],
        )
        stored = cursor.fetchone()[0]
    assert stored and SUPERUSER_PASSWORD not in stored
    for record in AuditRecord.objects.all():
        assert SUPERUSER_PASSWORD not in str(record.__dict__)

    check = staff_client.post(
        f"/admin/systems/postgresdatabase/{database.pk}/test-connection/", follow=True
    ).content.decode()
    assert "Connection OK" in check
    assert "operator credential: &#x27;postgres&#x27; OK (a superuser" in check


def test_a_wrong_operator_password_is_reported_by_test_connection(staff_client, limited_postgres):
    staff_client.post(
        "/admin/systems/postgresdatabase/add/",
        form(limited_postgres, operator_password="not-the-operator-password"),
    )
    database = PostgresDatabase.objects.get(name="app-db")
    page = staff_client.post(
        f"/admin/systems/postgresdatabase/{database.pk}/test-connection/", follow=True
    ).content.decode()
    assert "operator credential: FAILED" in page
    assert "rejected the password for user &#x27;postgres&#x27;" in page
    assert "not-the-operator-password" not in page


def test_an_operator_password_needs_its_user(staff_client, limited_postgres):
    response = staff_client.post(
        "/admin/systems/postgresdatabase/add/", form(limited_postgres, operator_username="")
    )
    assert response.status_code == 200
    assert "Name the operator user the operator password is for." in response.content.decode()
    assert not PostgresDatabase.objects.exists()


def test_a_signal_backend_operator_is_told_it_cannot_use_reserved_slots(limited_postgres):
    """On PostgreSQL 15 only superusers may use the reserved slots: an operator role with
    pg_signal_backend can end sessions but not get in when the app holds every other slot."""
    from opsportal.systems.adapters import postgres

    with limited_postgres.connect_as_superuser() as admin:
        admin.execute("DROP ROLE IF EXISTS ops")
        admin.execute("CREATE ROLE ops LOGIN PASSWORD 'ops-pw' IN ROLE pg_signal_backend")
    try:
        database = PostgresDatabase(
            name="app-db",
            host="127.0.0.1",
            port=limited_postgres.port,
            dbname=limited_postgres.dbname,
            username=limited_postgres.app_user,
            password=APP_PASSWORD,
            operator_username="ops",
            operator_password="ops-pw",
            connect_timeout_seconds=3,
        )
        result = postgres.ping(database)
        assert "'ops' OK for ending sessions (pg_signal_backend)" in result.summary
        assert "it cannot use the reserved slots" in result.summary
    finally:
        with limited_postgres.connect_as_superuser() as admin:
            admin.execute("DROP ROLE IF EXISTS ops")
