"""Adapters against the real systems, success and failure produced for real."""

import pytest

from opsportal.systems.adapters import docker_engine as docker_adapter
from opsportal.systems.adapters import http_endpoint as http_adapter
from opsportal.systems.adapters import postgres, redis_cache
from opsportal.systems.adapters.errors import (
    AuthenticationFailed,
    NotFound,
    OperationFailed,
    TimedOut,
    Unreachable,
)
from opsportal.systems.models import DockerEngine, HttpEndpoint, PostgresDatabase, RedisCache
from tests import realsystems

pytestmark = pytest.mark.django_db


def test_docker_ping_reports_engine_facts(docker_engine):
    result = docker_adapter.ping(docker_engine)
    assert result.details["server_version"]
    assert "running" in result.summary


def test_docker_engine_that_is_not_running_says_so(tmp_path):
    engine = DockerEngine(name="gone", base_url=f"unix://{tmp_path}/docker.sock", timeout_seconds=2)
    with pytest.raises(Unreachable) as error:
        docker_adapter.ping(engine)
    assert "gone" in str(error.value)
    assert "socket does not exist" in str(error.value)


def test_docker_engine_on_closed_tcp_port_is_unreachable():
    engine = DockerEngine(
        name="closed", base_url=f"tcp://127.0.0.1:{realsystems.free_port()}", timeout_seconds=2
    )
    with pytest.raises(Unreachable) as error:
        docker_adapter.ping(engine)
    assert "connection refused" in str(error.value)


def test_docker_engine_that_hangs_times_out():
    with realsystems.silent_listener() as port:
        engine = DockerEngine(name="hung", base_url=f"tcp://127.0.0.1:{port}", timeout_seconds=0.5)
        with pytest.raises(TimedOut) as error:
            docker_adapter.ping(engine)
    assert "did not answer within 0.5 s" in str(error.value)


def test_container_address_of_unknown_container(docker_engine):
    with pytest.raises(NotFound) as error:
        docker_adapter.container_address(docker_engine, "no-such-container")
    assert "no-such-container" in str(error.value)


def test_container_address_of_host_networked_container(docker_engine, run_container):
    container = run_container("sleep 30")
    assert docker_adapter.container_address(docker_engine, container.name) == "127.0.0.1"


def test_postgres_ping(postgres_target):
    result = postgres.ping(postgres_target)
    assert result.details["max_connections"] > 0
    assert result.details["connections"] >= 1


def test_postgres_wrong_password_is_named(password_postgres_port):
    database = PostgresDatabase(
        name="pw",
        host="127.0.0.1",
        port=password_postgres_port,
        dbname="postgres",
        username="postgres",
        password="wrong",
    )
    with pytest.raises(AuthenticationFailed) as error:
        postgres.ping(database)
    assert "rejected the password for user 'postgres'" in str(error.value)
    assert "wrong" not in str(error.value)


def test_postgres_right_password(password_postgres_port):
    database = PostgresDatabase(
        name="pw",
        host="127.0.0.1",
        port=password_postgres_port,
        dbname="postgres",
        username="postgres",
        password="s3cret-pg-password",
    )
    assert postgres.ping(database).details["server_version"]


def test_postgres_closed_port_is_unreachable():
    database = PostgresDatabase(
        name="closed",
        host="127.0.0.1",
        port=realsystems.free_port(),
        dbname="x",
        connect_timeout_seconds=2,
    )
    with pytest.raises(Unreachable) as error:
        postgres.ping(database)
    assert "Connection refused" in str(error.value) or "refused" in str(error.value).lower()


def test_postgres_missing_database(postgres_target):
    postgres_target.dbname = "does_not_exist_here"
    with pytest.raises(NotFound) as error:
        postgres.ping(postgres_target)
    assert "does_not_exist_here" in str(error.value)


def test_postgres_that_hangs_times_out():
    with realsystems.silent_listener() as port:
        database = PostgresDatabase(
            name="hung", host="127.0.0.1", port=port, dbname="x", connect_timeout_seconds=1
        )
        with pytest.raises(TimedOut):
            postgres.ping(database)


def test_postgres_statement_timeout_is_enforced(postgres_target):
    with (
        pytest.raises(TimedOut) as error,
        postgres.connect(postgres_target, statement_timeout_ms=200) as conn,
    ):
        conn.execute("SELECT pg_sleep(2)")
    assert "time limit" in str(error.value)


def test_redis_ping(redis_target):
    result = redis_cache.ping(redis_target)
    assert result.details["redis_version"]


def test_redis_wrong_password(password_redis_port):
    cache = RedisCache(name="pw", host="127.0.0.1", port=password_redis_port, password="nope")
    with pytest.raises(AuthenticationFailed) as error:
        redis_cache.ping(cache)
    assert "nope" not in str(error.value)


def test_redis_without_password_when_one_is_required(password_redis_port):
    cache = RedisCache(name="pw", host="127.0.0.1", port=password_redis_port)
    with pytest.raises(AuthenticationFailed):
        redis_cache.ping(cache)


def test_redis_right_password(password_redis_port):
    cache = RedisCache(
        name="pw", host="127.0.0.1", port=password_redis_port, password="s3cret-redis-password"
    )
    assert redis_cache.ping(cache).details["redis_version"]


def test_redis_down_is_unreachable():
    cache = RedisCache(name="down", host="127.0.0.1", port=realsystems.free_port())
    with pytest.raises(Unreachable) as error:
        redis_cache.ping(cache)
    assert "down" in str(error.value)


def test_http_ping(http_endpoint, http_server):
    result = http_adapter.ping(http_endpoint)
    assert result.details["status"] == 200
    assert http_server.requests


def test_http_unexpected_status(http_endpoint, http_server):
    http_server.behaviour.status = 503
    with pytest.raises(OperationFailed) as error:
        http_adapter.ping(http_endpoint)
    assert "answered HTTP 503, expected 200" in str(error.value)


def test_http_slow_endpoint_times_out(http_endpoint, http_server):
    http_server.behaviour.delay_seconds = 1.5
    http_endpoint.timeout_seconds = 0.3
    with pytest.raises(TimedOut):
        http_adapter.ping(http_endpoint)


def test_http_closed_port():
    endpoint = HttpEndpoint(
        name="closed", url=f"http://127.0.0.1:{realsystems.free_port()}/", timeout_seconds=1
    )
    with pytest.raises(Unreachable) as error:
        http_adapter.ping(endpoint)
    assert "connection refused" in str(error.value)


def test_http_authorization_header_is_sent(http_endpoint, http_server):
    http_endpoint.authorization_header = "Bearer api-token"
    http_adapter.ping(http_endpoint)
    assert http_server.requests[-1][1]["Authorization"] == "Bearer api-token"


def test_postgres_inside_a_container_is_reached_through_it_and_a_stopped_one_says_so(
    docker_engine, run_container, postgres_target
):
    # The "inside container X" registration: no host, the engine and the container's name.
    # The test container shares the host's network, where the target PostgreSQL listens.
    container = run_container("sleep 300")
    database = PostgresDatabase.objects.create(
        name="pg-in-container",
        host="",
        docker_engine=docker_engine,
        container_name=container.name,
        port=postgres_target.port,
        dbname=postgres_target.dbname,
        username=postgres_target.username,
        connect_timeout_seconds=3,
    )
    assert postgres.ping(database).details["server_version"]

    container.stop(timeout=1)
    with pytest.raises(Unreachable) as error:
        postgres.ping(database)
    assert f"Container {container.name!r}" in str(error.value)
    assert "is not running" in str(error.value)

    container.remove(force=True)
    with pytest.raises(NotFound):
        postgres.ping(database)
