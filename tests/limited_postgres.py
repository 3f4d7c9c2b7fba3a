"""The limited PostgreSQL server (max_connections=20, 3 reserved for superusers, an app
role) as pytest fixtures, for the tests of connection exhaustion."""

from __future__ import annotations

import contextlib
import time

import docker
import psycopg
import pytest

from tests import realsystems

SUPERUSER_PASSWORD = "s3cret-operator-password"
APP_PASSWORD = "s3cret-app-password"


@pytest.fixture(scope="session")
def limited_postgres_server():
    with realsystems.limited_postgres(
        superuser_password=SUPERUSER_PASSWORD, app_user="app", app_password=APP_PASSWORD
    ) as server:
        yield server


@pytest.fixture
def limited_postgres(limited_postgres_server):
    """The server, with every connection a test left behind closed (and, should one have
    escaped, terminated) so the next test starts with free slots."""
    yield limited_postgres_server
    limited_postgres_server.release()
    with limited_postgres_server.connect_as_superuser() as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE usename = 'app' AND pid <> pg_backend_pid()"
        )


PG_SERVER_IMAGE = "opsportal-test/postgres:15"


@contextlib.contextmanager
def postgres_in_container(docker_client, *, name: str):
    """A real PostgreSQL server in a container on the test engine (max_connections=20, 3
    reserved for superusers) with an application role "app" owning database "app", as the
    runbook's platform runs it; the container is removed afterwards."""
    try:
        docker_client.images.get(PG_SERVER_IMAGE)
    except docker.errors.ImageNotFound:
        pytest.fail(f"{PG_SERVER_IMAGE} is missing: deploy/dev/build-test-images.sh builds it")
    port = realsystems.free_port()
    container = docker_client.containers.run(
        PG_SERVER_IMAGE,
        ["-p", str(port), "-c", "max_connections=20", "-c", "superuser_reserved_connections=3"],
        name=name,
        detach=True,
        network_mode="host",
        environment={"POSTGRES_PASSWORD": SUPERUSER_PASSWORD},
    )
    try:
        server = realsystems.LimitedPostgres(
            port=port,
            superuser_password=SUPERUSER_PASSWORD,
            app_user="app",
            app_password=APP_PASSWORD,
            max_connections=20,
            superuser_reserved_connections=3,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                admin = server.connect_as_superuser()
                break
            except psycopg.OperationalError:
                container.reload()
                if container.status != "running" or time.monotonic() > deadline:
                    raise AssertionError(container.logs().decode()[-2000:]) from None
                time.sleep(0.2)
        with admin:
            admin.execute(f"CREATE ROLE app LOGIN PASSWORD '{APP_PASSWORD}'")
            admin.execute("CREATE DATABASE app OWNER app")
        server.dbname = "app"
        yield server
        server.release()
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            docker_client.containers.get(name).remove(force=True)
