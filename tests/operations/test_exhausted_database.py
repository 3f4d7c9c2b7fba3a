"""Issue 16, failure 1: the runbook's database fix runs while the application holds every
connection slot its user may have (max_connections=20, 3 reserved for superusers: the
app's 17 connections exhaust it), by the operator credential or by psql inside the
database's container, and says which way it went in and why."""

import uuid

import psycopg
import pytest

from opsportal.operations.models import OperationStatus
from opsportal.systems.models import PostgresDatabase
from tests import realsystems
from tests.limited_postgres import APP_PASSWORD, SUPERUSER_PASSWORD, postgres_in_container


def register(server, **extra) -> PostgresDatabase:
    return PostgresDatabase.objects.create(
        name="app-db",
        host="127.0.0.1",
        port=server.port,
        dbname=server.dbname,
        username=server.app_user,
        password=APP_PASSWORD,
        connect_timeout_seconds=3,
        **extra,
    )


def assert_app_refused(server):
    with pytest.raises(psycopg.OperationalError, match="remaining connection slots are reserved"):
        server.connect_as_app()


def test_as_the_registered_app_user_it_fails_and_says_why(db, limited_postgres, run_operation):
    database = register(limited_postgres)
    limited_postgres.exhaust(limited_postgres.usable_by_app)
    assert_app_refused(limited_postgres)
    operation = run_operation("db_terminate_idle", database, {"application_name": "leaky-app"})
    assert operation.status == OperationStatus.FAILED
    assert "has too many connections" in operation.error
    assert "Tried by registered user as 'app'" in operation.error
    assert "register an operator credential" in operation.error


def test_operator_credential_frees_the_exhausted_database(db, limited_postgres, run_operation):
    database = register(
        limited_postgres, operator_username="postgres", operator_password=SUPERUSER_PASSWORD
    )
    leaked = limited_postgres.exhaust(limited_postgres.usable_by_app)
    other = limited_postgres.connect_as_superuser("app")  # someone else's idle session
    try:
        assert_app_refused(limited_postgres)

        summary = run_operation("db_connections", database)
        assert summary.status == OperationStatus.SUCCEEDED, summary.error
        assert summary.result["usable_by_user"] == 17
        assert summary.result["available_to_user"] == 0
        assert "The registered user 'app' can get 17" in summary.output
        assert "new connections of the application are refused" in summary.output
        assert "Connected by operator credential as 'postgres'" in summary.output

        fixed = run_operation("db_terminate_idle", database, {"application_name": "leaky-app"})
        assert fixed.status == OperationStatus.SUCCEEDED, fixed.error
        pids = {conn.info.backend_pid for conn in leaked}
        assert {row["pid"] for row in fixed.result["terminated"]} == pids
        assert all(row["terminated"] for row in fixed.result["terminated"])
        assert fixed.result["access"]["method"] == "operator credential"
        assert "Terminated 17 connections of application 'leaky-app' idle" in fixed.output
        assert "it can use the reserved connection slots" in fixed.output
        # The other application's session was not touched, and the app gets in again.
        assert other.execute("SELECT 1").fetchone() == (1,)
        limited_postgres.connect_as_app().close()
    finally:
        other.close()


@pytest.fixture
def database_in_a_container(db, docker_client, docker_engine):
    """A real PostgreSQL server in a container on the test engine (max_connections=20, 3
    reserved), registered "inside a container" with no host and no operator credential, as
    the runbook's platform runs it."""
    name = f"opsportal-test-pg-{uuid.uuid4().hex[:10]}"
    with postgres_in_container(docker_client, name=name) as server:
        database = PostgresDatabase.objects.create(
            name="app-db",
            port=server.port,
            dbname="app",
            username="app",
            password=APP_PASSWORD,
            docker_engine=docker_engine,
            container_name=name,
            connect_timeout_seconds=3,
        )
        yield database, server


@pytest.mark.docker
def test_docker_exec_psql_frees_the_exhausted_database_in_its_container(
    database_in_a_container, run_operation
):
    database, server = database_in_a_container
    leaked = server.exhaust(server.usable_by_app)
    assert_app_refused(server)

    summary = run_operation("db_connections", database)
    assert summary.status == OperationStatus.SUCCEEDED, summary.error
    assert ["leaky-app", 17] in summary.result["by_application"]
    assert summary.result["available_to_user"] == 0
    assert summary.result["access"]["method"] == "docker exec"

    fixed = run_operation("db_terminate_idle", database, {"application_name": "leaky-app"})
    assert fixed.status == OperationStatus.SUCCEEDED, fixed.error
    assert {row["pid"] for row in fixed.result["terminated"]} == {
        conn.info.backend_pid for conn in leaked
    }
    assert "Connected by docker exec as 'postgres'" in fixed.output
    assert f"runs in container {database.container_name!r}" in fixed.output
    server.connect_as_app().close()


@pytest.mark.docker
def test_docker_exec_without_psql_in_the_container_says_so(
    db, docker_engine, run_container, run_operation
):
    """A container that has no psql: the failure names the way in and what is missing."""
    container = run_container("sleep 60")
    database = PostgresDatabase.objects.create(
        name="no-psql",
        host="127.0.0.1",
        port=realsystems.free_port(),
        dbname="app",
        username="app",
        docker_engine=docker_engine,
        container_name=container.name,
        connect_timeout_seconds=2,
    )
    operation = run_operation("db_terminate_idle", database, {})
    assert operation.status == OperationStatus.FAILED
    assert "could not be run" in operation.error and "is psql installed there?" in operation.error
    assert "Tried by docker exec as 'postgres'" in operation.error


@pytest.mark.docker
def test_a_refused_operator_credential_falls_back_to_psql_in_the_container(
    database_in_a_container, run_operation
):
    """A wrong operator password (or a role that cannot use the reserved slots on this
    version) must not leave the exhausted database without its fix when psql inside its
    container can still get in; the output says why that way was taken."""
    database, server = database_in_a_container
    database.operator_username = "postgres"
    database.operator_password = "not-the-operator-password"
    database.save()
    leaked = server.exhaust(server.usable_by_app)
    assert_app_refused(server)

    fixed = run_operation("db_terminate_idle", database, {"application_name": "leaky-app"})
    assert fixed.status == OperationStatus.SUCCEEDED, fixed.error
    assert {row["pid"] for row in fixed.result["terminated"]} == {
        conn.info.backend_pid for conn in leaked
    }
    assert "Connected by docker exec as 'postgres'" in fixed.output
    assert "the operator credential was refused" in fixed.output
    assert "not-the-operator-password" not in fixed.output + (fixed.error or "")
    server.connect_as_app().close()
