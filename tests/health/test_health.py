"""/health and /health/detailed against real systems, including dead and hung ones."""

import datetime as dt
import time

import pytest
from django.utils import timezone

from opsportal.health.models import Heartbeat, StatusReport
from opsportal.health.tasks import beat_heartbeat, refresh_status
from opsportal.systems.models import DockerEngine, HttpEndpoint, PostgresDatabase, RedisCache
from tests import realsystems

pytestmark = pytest.mark.django_db

DETAILS = {"HTTP_AUTHORIZATION": "Bearer health-token-for-tests"}


@pytest.fixture(autouse=True)
def health_settings(settings):
    settings.HEALTH_TOKEN = "health-token-for-tests"
    # Most tests are about systems; the worker and beat checks have their own tests.
    settings.HEALTH_CRITICAL_CHECKS = ["database", "cache", "broker", "disk", "systems"]
    settings.HEALTH_CHECK_TIMEOUT = 2.0
    return settings


def by_name(body: dict) -> dict:
    return {check["name"]: check for check in body["checks"]}


def test_liveness_answers_without_touching_the_database(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_detailed_with_every_system_up(
    client, docker_engine, postgres_target, redis_target, http_endpoint
):
    response = client.get("/health/detailed", **DETAILS)
    body = response.json()
    checks = by_name(body)
    assert response.status_code == 200, body
    assert body["status"] == "ok"
    for name in [
        "database",
        "cache",
        "broker",
        "disk",
        "memory",
        "docker:test-engine",
        "postgres:test-postgres",
        "redis:test-redis",
        "http:test-api",
    ]:
        assert checks[name]["status"] == "ok", checks[name]
        assert checks[name]["duration_ms"] >= 0
    assert checks["docker:test-engine"]["critical"] is True


def test_anonymous_sees_only_the_overall_status_of_the_scheduled_checks(client, http_endpoint):
    refresh_status.apply()
    response = client.get("/health/detailed")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_anonymous_callers_make_the_portal_connect_to_no_registered_system(client, settings, db):
    """An outsider must not be able to make the portal probe production: every registered
    system sits on a port that counts connections, and anonymous requests make none."""
    settings.HEALTH_CHECK_TIMEOUT = 3.0
    with (
        realsystems.counting_listener() as api,
        realsystems.counting_listener() as database,
        realsystems.counting_listener() as cache,
        realsystems.counting_listener() as engine,
    ):
        HttpEndpoint.objects.create(
            name="api", url=f"http://127.0.0.1:{api.port}/", timeout_seconds=1
        )
        PostgresDatabase.objects.create(
            name="db", host="127.0.0.1", port=database.port, dbname="app", password="pw"
        )
        RedisCache.objects.create(name="cache", host="127.0.0.1", port=cache.port)
        DockerEngine.objects.create(
            name="engine", base_url=f"tcp://127.0.0.1:{engine.port}", tls_verify=False
        )
        listeners = {"api": api, "db": database, "cache": cache, "engine": engine}

        refresh_status.apply()  # the scheduled run: it does connect, once each
        after_schedule = {name: c.connections for name, c in listeners.items()}
        assert all(after_schedule.values()), after_schedule

        for _ in range(5):
            response = client.get("/health/detailed")
            assert response.status_code == 503  # the systems failed their scheduled check
            assert response.json() == {"status": "failing"}
        assert {name: c.connections for name, c in listeners.items()} == after_schedule

        # With the token the checks are live: each system is reached again.
        client.get("/health/detailed", **DETAILS)
        for name, counter in listeners.items():
            assert counter.connections > after_schedule[name], name


def test_anonymous_status_is_failing_without_a_recent_scheduled_run(client, settings, db):
    settings.HEALTH_CRITICAL_CHECKS = ["database"]
    response = client.get("/health/detailed")
    assert (response.status_code, response.json()) == (503, {"status": "failing"})
    refresh_status.apply()
    assert client.get("/health/detailed").status_code == 200
    # The schedule stopped (beat, broker or worker down): the verdict goes stale.
    StatusReport.objects.update(
        checked_at=timezone.now() - dt.timedelta(seconds=settings.HEALTH_BEAT_MAX_AGE_SECONDS + 1)
    )
    response = client.get("/health/detailed")
    assert (response.status_code, response.json()) == (503, {"status": "failing"})


def test_a_wrong_token_is_a_401(client, http_endpoint):
    response = client.get("/health/detailed", HTTP_AUTHORIZATION="Bearer wrong")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert "checks" not in response.json()


@pytest.mark.parametrize("header", ["Bearer \u00fc-token", "Bearer \u20ac", "B\u00e9arer x"])
def test_a_non_ascii_token_is_a_401_not_a_server_error(client, settings, header, db):
    settings.METRICS_TOKEN = "scrape-token"
    assert client.get("/metrics", HTTP_AUTHORIZATION=header).status_code == 401
    response = client.get("/health/detailed", HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
    assert "checks" not in response.json()


def test_staff_session_sees_details(staff_client, http_endpoint):
    body = staff_client.get("/health/detailed").json()
    assert "http:test-api" in by_name(body)


def test_a_critical_system_down_gives_503(client, http_endpoint, http_server):
    http_server.behaviour.status = 500
    response = client.get("/health/detailed", **DETAILS)
    assert response.status_code == 503
    check = by_name(response.json())["http:test-api"]
    assert check["status"] == "failing"
    assert "answered HTTP 500" in check["message"]
    assert client.get("/health/detailed").json() == {"status": "failing"}


def test_a_non_critical_system_down_is_reported_but_not_fatal(client, db):
    HttpEndpoint.objects.create(
        name="optional",
        url=f"http://127.0.0.1:{realsystems.free_port()}/",
        critical=False,
        timeout_seconds=1,
    )
    response = client.get("/health/detailed", **DETAILS)
    assert response.status_code == 200
    assert by_name(response.json())["http:optional"]["status"] == "failing"


def test_a_stopped_container_engine_gives_503(client, db, tmp_path):
    from opsportal.systems.models import DockerEngine

    DockerEngine.objects.create(name="stopped", base_url=f"unix://{tmp_path}/gone.sock")
    response = client.get("/health/detailed", **DETAILS)
    assert response.status_code == 503
    assert "not reachable" in by_name(response.json())["docker:stopped"]["message"]


def test_a_hung_system_cannot_make_the_endpoint_hang(client, settings, db):
    settings.HEALTH_CHECK_TIMEOUT = 1.0
    with realsystems.silent_listener() as port:
        HttpEndpoint.objects.create(
            name="hung", url=f"http://127.0.0.1:{port}/", timeout_seconds=60
        )
        started = time.monotonic()
        response = client.get("/health/detailed", **DETAILS)
        elapsed = time.monotonic() - started
    assert elapsed < 2.5
    assert response.status_code == 503
    check = by_name(response.json())["http:hung"]
    assert check["status"] == "timeout"
    assert "No answer within 1 s" in check["message"]


def test_secrets_never_appear_in_health_output(
    client, db, password_postgres_port, password_redis_port
):
    PostgresDatabase.objects.create(
        name="pg-secret",
        host="127.0.0.1",
        port=password_postgres_port,
        dbname="postgres",
        password="pg-Password-Not-To-Leak",
    )
    RedisCache.objects.create(
        name="redis-secret",
        host="127.0.0.1",
        port=password_redis_port,
        password="redis-Password-Not-To-Leak",
    )
    HttpEndpoint.objects.create(
        name="api-secret",
        url=f"http://127.0.0.1:{realsystems.free_port()}/",
        authorization_header="Bearer api-Token-Not-To-Leak",
    )
    text = client.get("/health/detailed", **DETAILS).content.decode()
    assert "rejected the password" in text
    assert "rejected the credentials" in text
    for secret in [
        "pg-Password-Not-To-Leak",
        "redis-Password-Not-To-Leak",
        "api-Token-Not-To-Leak",
    ]:
        assert secret not in text


def test_beat_heartbeat(client, settings):
    settings.HEALTH_CRITICAL_CHECKS = ["beat"]
    assert client.get("/health/detailed", **DETAILS).status_code == 503
    beat_heartbeat.apply()
    response = client.get("/health/detailed", **DETAILS)
    assert response.status_code == 200
    assert by_name(response.json())["beat"]["status"] == "ok"
    Heartbeat.objects.filter(name="beat").update(at=timezone.now() - dt.timedelta(minutes=10))
    response = client.get("/health/detailed", **DETAILS)
    assert response.status_code == 503
    message = by_name(response.json())["beat"]["message"]
    assert "600 s old" in message
    # A worker runs the heartbeat task: a dead worker must not read as a dead beat only.
    assert "beat, the broker or every worker is down" in message


def test_workers_check_fails_without_a_worker(client, settings):
    settings.HEALTH_CRITICAL_CHECKS = ["workers"]
    settings.HEALTH_CHECK_TIMEOUT = 1.0
    response = client.get("/health/detailed", **DETAILS)
    assert response.status_code == 503
    assert by_name(response.json())["workers"]["message"] == "No Celery worker answered a ping."


@pytest.mark.django_db(transaction=True)
def test_workers_check_with_a_real_worker(client, settings, celery_worker_process):
    settings.HEALTH_CRITICAL_CHECKS = ["workers", "broker"]
    response = client.get("/health/detailed", **DETAILS)
    assert response.status_code == 200, response.json()
    assert by_name(response.json())["workers"]["message"].startswith("answering: test-")


def test_broker_down_is_reported(client, settings):
    settings.HEALTH_CRITICAL_CHECKS = ["broker"]
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{realsystems.free_port()}/0"
    response = client.get("/health/detailed", **DETAILS)
    assert response.status_code == 503
    assert by_name(response.json())["broker"]["status"] in {"failing", "timeout"}


def test_disk_where_backups_go_and_memory_thresholds_and_criticality_are_configurable(
    client, settings, tmp_path
):
    settings.BACKUP_ROOT = tmp_path / "backups"
    # Thresholds no real machine meets: more than 100% free, less than 0% memory used.
    settings.HEALTH_DISK_MIN_FREE_PERCENT = 101.0
    settings.HEALTH_MEMORY_MAX_USED_PERCENT = -1.0
    settings.HEALTH_CRITICAL_CHECKS = ["database", "disk"]
    response = client.get("/health/detailed", **DETAILS)
    checks = by_name(response.json())
    assert response.status_code == 503
    assert checks["disk"]["status"] == "failing" and checks["disk"]["critical"] is True
    assert checks["disk"]["message"].startswith("Low disk space:")
    assert str(settings.BACKUP_ROOT) in checks["disk"]["message"]
    assert checks["memory"]["status"] == "failing" and checks["memory"]["critical"] is False
    assert checks["memory"]["message"].startswith("High memory use:")

    # The same failures with disk no longer critical: reported, but the portal counts as up.
    settings.HEALTH_CRITICAL_CHECKS = ["database"]
    response = client.get("/health/detailed", **DETAILS)
    assert response.status_code == 200
    assert by_name(response.json())["disk"]["status"] == "failing"

    settings.HEALTH_DISK_MIN_FREE_PERCENT = 0.0
    settings.HEALTH_MEMORY_MAX_USED_PERCENT = 100.0
    settings.HEALTH_CRITICAL_CHECKS = ["database", "disk", "memory"]
    response = client.get("/health/detailed", **DETAILS)
    assert response.status_code == 200
    assert by_name(response.json())["disk"]["status"] == "ok"
