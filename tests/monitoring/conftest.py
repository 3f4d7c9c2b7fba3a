from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
import pytest

from opsportal.monitoring import services
from opsportal.monitoring.models import CollectionSchedule
from opsportal.systems.models import PostgresDatabase
from tests import realsystems

SMALL_MAX_CONNECTIONS = 10


@pytest.fixture(scope="session")
def small_postgres_port():
    """A real throw-away PostgreSQL server with max_connections=10, so connection
    pressure can be produced without crowding the shared test server."""
    root = Path(tempfile.mkdtemp(prefix="opsportal-pg-small-"))
    data = root / "data"
    if realsystems.os.geteuid() == 0:
        shutil.chown(root, "postgres")
    port = realsystems.free_port()
    run = realsystems._as_postgres_user
    subprocess.run(
        run([str(realsystems.PG_BIN / "initdb"), "-D", str(data), "-U", "postgres",
             "--auth=trust", "-E", "UTF8"]),
        check=True, capture_output=True,
    )  # fmt: skip
    subprocess.run(
        run([str(realsystems.PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(root / "log"),
             "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1 "
             f"-c max_connections={SMALL_MAX_CONNECTIONS} -c superuser_reserved_connections=0",
             "-w", "start"]),
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        yield port
    finally:
        subprocess.run(
            run([str(realsystems.PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
            check=False,
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def small_postgres(db, small_postgres_port) -> PostgresDatabase:
    return PostgresDatabase.objects.create(
        name="small-postgres",
        host="127.0.0.1",
        port=small_postgres_port,
        dbname="postgres",
        username="postgres",
        connect_timeout_seconds=3,
    )


@pytest.fixture
def open_connections():
    """Real client connections to a PostgreSQL server, closed after the test."""
    opened: list[psycopg.Connection] = []

    def open_(port: int, dbname: str = "postgres", count: int = 1) -> list[psycopg.Connection]:
        new = [
            psycopg.connect(
                host="127.0.0.1", port=port, dbname=dbname, user="postgres", autocommit=True
            )
            for _ in range(count)
        ]
        opened.extend(new)
        return new

    yield open_
    for conn in opened:
        with contextlib.suppress(Exception):
            conn.close()


@pytest.fixture
def eager_celery():
    """Tasks sent by the code under test run at once in this process (the worker's code
    path without a worker; tests/monitoring/test_collection_spread.py has real workers)."""
    from opsportal.celery import app

    app.conf.task_always_eager = True
    try:
        yield app
    finally:
        app.conf.task_always_eager = False


def collect_now() -> services.CollectionRound:
    """One collection round with every system due now (the tests do not wait 30 s)."""
    CollectionSchedule.objects.update(next_due_at=None)
    return services.collection_run_due()


def wait_until(predicate, timeout: float = 30.0, step: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(step)
    raise AssertionError(f"condition not met within {timeout} s")
