"""The limited PostgreSQL server (max_connections=20, 3 reserved for superusers, an app
role) as pytest fixtures, for the tests of connection exhaustion."""

from __future__ import annotations

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
