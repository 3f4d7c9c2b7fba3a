from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path

import docker
import psycopg
import pytest
import redis
from django.contrib.auth import get_user_model

from opsportal.systems.models import DockerEngine, HttpEndpoint, PostgresDatabase, RedisCache
from tests import realsystems
from tests.limited_postgres import limited_postgres, limited_postgres_server  # noqa: F401
from tests.signin import TwoFactorClient

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TEST_IMAGE = "opsportal-test/busybox:1"
# Concurrent test runs (several developers on one machine) each set their own of these.
TARGET_DBNAME = os.environ.get("OPSPORTAL_TEST_TARGET_DB", "opsportal_target")
REDIS_TARGET_DB = int(os.environ.get("OPSPORTAL_TEST_REDIS_TARGET_DB", "13"))


@pytest.fixture(scope="session", autouse=True)
def _flush_past_the_audit_truncate_guard():
    """Transactional tests end with Django's flush, a TRUNCATE of every table, which the audit
    table refuses (audit migration 0003). The suite connects as a PostgreSQL superuser, so its
    flush alone sets session_replication_role = replica (superuser-only) for its own
    transaction: triggers stay on for everything the tests themselves do."""
    from django.db import connections

    operations = type(connections["default"].ops)
    original = operations.execute_sql_flush

    def execute_sql_flush(self, sql_list):
        if self.connection.vendor == "postgresql":
            sql_list = ["SET LOCAL session_replication_role = replica", *sql_list]
        return original(self, sql_list)

    operations.execute_sql_flush = execute_sql_flush
    yield
    operations.execute_sql_flush = original


@pytest.fixture(autouse=True)
def _no_round_recorded_by_an_earlier_test():
    """The overview reuses its sparklines until the next round is stored, a mark set when
    the round commits. A test inside a transaction never commits, so a mark left by an
    earlier test would hide its own samples from the overview."""
    from django.core.cache import cache

    from opsportal.monitoring.selectors import SAMPLES_STORED_CACHE_KEY

    cache.delete(SAMPLES_STORED_CACHE_KEY)


def _required_env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.exit(
            f"{name} is not set: run the suite with `make test`, which starts the "
            "services it needs and sets it.",
            returncode=2,
        )
    return value


@pytest.fixture(scope="session")
def docker_host() -> str:
    return _required_env("OPSPORTAL_TEST_DOCKER_HOST")


@pytest.fixture(scope="session")
def docker_client(docker_host):
    client = docker.DockerClient(base_url=docker_host, timeout=30)
    try:
        client.ping()
    except Exception as exc:
        pytest.exit(
            f"The test Docker engine at {docker_host} does not answer ({exc}); "
            "`make test` starts it.",
            returncode=2,
        )
    yield client
    client.close()


@pytest.fixture
def run_container(docker_client):
    """Start a container from the test image; it is removed after the test."""
    started = []

    def start(command: str | list[str], *, name: str | None = None, **kwargs):
        name = name or f"opsportal-test-{uuid.uuid4().hex[:10]}"
        started.append(name)
        kwargs.setdefault("network_mode", "host")
        return docker_client.containers.run(TEST_IMAGE, command, name=name, detach=True, **kwargs)

    yield start
    for name in started:
        with contextlib.suppress(docker.errors.NotFound):
            docker_client.containers.get(name).remove(force=True)


@pytest.fixture
def docker_engine(db, docker_host) -> DockerEngine:
    return DockerEngine.objects.create(name="test-engine", base_url=docker_host, timeout_seconds=5)


@pytest.fixture(scope="session")
def target_database_dsn() -> str:
    """A real database for the portal to operate on, separate from its own."""
    admin_dsn = _required_env("OPSPORTAL_TEST_PG_DSN")
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [TARGET_DBNAME]
        ).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{TARGET_DBNAME}"')
    return admin_dsn.rsplit("/", 1)[0] + "/" + TARGET_DBNAME


@pytest.fixture
def postgres_target(db, target_database_dsn) -> PostgresDatabase:
    info = psycopg.conninfo.conninfo_to_dict(target_database_dsn)
    return PostgresDatabase.objects.create(
        name="test-postgres",
        host=info.get("host", "127.0.0.1"),
        port=int(info.get("port", 5432)),
        dbname=TARGET_DBNAME,
        username=info.get("user", "postgres"),
        connect_timeout_seconds=3,
    )


@pytest.fixture(scope="session")
def redis_url() -> str:
    return _required_env("OPSPORTAL_TEST_REDIS_URL")


@pytest.fixture
def redis_target(db, redis_url) -> RedisCache:
    url = redis.connection.parse_url(redis_url)
    cache = RedisCache.objects.create(
        name="test-redis",
        host=url.get("host", "127.0.0.1"),
        port=url.get("port", 6379),
        db=REDIS_TARGET_DB,
        timeout_seconds=2,
    )
    yield cache
    client = redis.Redis(host=cache.host, port=cache.port, db=REDIS_TARGET_DB)
    client.flushdb()
    client.close()


@pytest.fixture
def http_server():
    with realsystems.http_server() as server:
        yield server


@pytest.fixture
def http_endpoint(db, http_server) -> HttpEndpoint:
    return HttpEndpoint.objects.create(
        name="test-api", url=http_server.url + "/health", timeout_seconds=2
    )


@pytest.fixture(scope="session")
def password_postgres_port():
    with realsystems.password_postgres("s3cret-pg-password") as port:
        yield port


@pytest.fixture(scope="session")
def password_redis_port():
    with realsystems.password_redis("s3cret-redis-password") as port:
        yield port


@pytest.fixture
def client():
    """pytest-django's client, whose force_login also completes the second factor (two-factor
    sign-in is required in the test environment as in production)."""
    return TwoFactorClient()


@pytest.fixture
def superuser(db):
    return get_user_model().objects.create_superuser("root", "root@example.com", "pw-root-123!")


@pytest.fixture
def staff_client(client, superuser):
    client.force_login(superuser)
    return client


@pytest.fixture(scope="module")
def celery_worker_process(django_db_setup):
    """A real Celery worker process on the test broker and the test database.

    Module-scoped: a worker left running would consume other modules' tasks in its own
    process, out of reach of their in-process assertions (e.g. the mail outbox)."""
    from tests.workers import celery_worker

    with celery_worker(pool="threads", concurrency=4) as process:
        yield process


def _test_database_url(settings_dict: dict) -> str:
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or 5432
    user = settings_dict.get("USER") or "postgres"
    return f"postgres://{user}@{host}:{port}/{settings_dict['NAME']}"


@pytest.fixture(scope="session")
def tls_engine_material() -> dict[str, str]:
    """Connection details of the second test engine: tcp:// with mutual TLS, a Swarm manager."""
    url = os.environ.get("OPSPORTAL_TEST_DOCKER_TLS_URL")
    directory = os.environ.get("OPSPORTAL_TEST_DOCKER_TLS_DIR")
    if not url or not directory:
        pytest.exit("The TLS Docker engine is not configured: run `make test`.", returncode=2)
    tls = Path(directory)
    return {
        "base_url": url,
        "tls_ca_cert": (tls / "ca.pem").read_text(),
        "tls_client_cert": (tls / "client.pem").read_text(),
        "tls_client_key": (tls / "client-key.pem").read_text(),
    }
