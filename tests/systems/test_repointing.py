"""Re-pointing a system drops its stored secret unless it is entered again (issue 9, hole 3).

Someone who may edit a system but does not know its password changes where it points
(host, port, URL, base URL, user, ...) to a server they control and clicks Test
connection: the portal must not send the stored password there. Each test shows on a
real socket what the portal sends, with a control that re-enters the secret so the same
socket does receive it.
"""

from __future__ import annotations

import pytest
from django.contrib.messages import get_messages

from opsportal.audit.models import AuditRecord
from opsportal.systems.models import DockerEngine, HttpEndpoint, PostgresDatabase, RedisCache
from opsportal.systems.services import system_save
from tests import realsystems

pytestmark = pytest.mark.django_db

PG_PASSWORD = "s3cret-pg-password"  # the session's password_postgres cluster
REDIS_PASSWORD = "repoint-Redis-Secret-9"
API_AUTHORIZATION = "Bearer repoint-Api-Secret-7"


def pg_form(database: PostgresDatabase, **overrides) -> dict:
    return {
        "name": database.name,
        "description": database.description,
        "critical": "on",
        "check_interval_seconds": "30",
        "host": database.host,
        "port": str(database.port),
        "dbname": database.dbname,
        "username": database.username,
        "password": "",
        "sslmode": "prefer",
        "connect_timeout_seconds": "3",
        "container_name": "",
        **overrides,
    }


@pytest.fixture
def registered_postgres(password_postgres_port) -> PostgresDatabase:
    return system_save(
        system=PostgresDatabase(
            name="pg-main",
            host="127.0.0.1",
            port=password_postgres_port,
            dbname="postgres",
            username="postgres",
            password=PG_PASSWORD,
            connect_timeout_seconds=3,
        )
    )


def test_devops_moving_a_database_without_its_password_loses_it(role_client, registered_postgres):
    devops = role_client("DevOps")
    database = registered_postgres
    change_url = f"/admin/systems/postgresdatabase/{database.pk}/change/"
    test_url = f"/admin/systems/postgresdatabase/{database.pk}/test-connection/"
    assert "Connection OK" in devops.post(test_url, follow=True).content.decode()

    with realsystems.postgres_password_catcher() as catcher:
        saved = devops.post(change_url, pg_form(database, port=str(catcher.port)), follow=True)
        assert saved.status_code == 200
        page = saved.content.decode()
        assert "The stored password of pg-main was dropped because the port changed" in page
        database.refresh_from_db()
        assert database.port == catcher.port
        assert database.password == ""

        result = devops.post(test_url, follow=True).content.decode()
        assert "Connection failed" in result
        assert catcher.startups, "the portal did not even connect to the new address"
        assert catcher.passwords == []
        assert PG_PASSWORD.encode() not in bytes(catcher.received)

        # The control: entered again with the change, the password does go to the new
        # address (so the catcher above would have caught it).
        devops.post(change_url, pg_form(database, port=str(catcher.port), password="typed-again"))
        database.refresh_from_db()
        assert database.password == "typed-again"
        devops.post(test_url)
        assert catcher.passwords == [b"typed-again"]

    dropped = AuditRecord.objects.get(
        object_type="systems.postgresdatabase", message__startswith="Stored password dropped"
    )
    assert dropped.actor_name == "user-devops"
    assert dropped.changes == {"secrets_dropped": ["password"], "because_changed": ["port"]}
    change = AuditRecord.objects.filter(
        object_type="systems.postgresdatabase", action="change", changes__has_key="port"
    ).earliest("id")
    assert change.changes["password"] == ["********", "(cleared)"]


def test_editing_what_does_not_re_point_keeps_the_password(role_client, registered_postgres):
    database = registered_postgres
    devops = role_client("DevOps")
    response = devops.post(
        f"/admin/systems/postgresdatabase/{database.pk}/change/",
        pg_form(database, description="primary", connect_timeout_seconds="4"),
    )
    assert response.status_code == 302
    assert not any("dropped" in str(m) for m in get_messages(response.wsgi_request))
    database.refresh_from_db()
    assert (database.description, database.connect_timeout_seconds) == ("primary", 4)
    assert database.password == PG_PASSWORD


@pytest.mark.parametrize(
    "change",
    [
        {"host": "localhost"},
        {"dbname": "template1"},
        {"username": "app"},
        {"sslmode": "disable"},
    ],
)
def test_every_postgres_connection_field_re_points(registered_postgres, change):
    database = PostgresDatabase.objects.get(pk=registered_postgres.pk)
    for name, value in change.items():
        setattr(database, name, value)
    system_save(system=database)
    assert database.secrets_dropped == ("password",)
    assert PostgresDatabase.objects.get(pk=database.pk).password == ""


def test_the_model_drops_the_secret_for_every_caller(registered_postgres):
    """Not only the admin form: any save that re-points, however the row was loaded."""
    database = PostgresDatabase.objects.get(pk=registered_postgres.pk)
    database.host = "localhost"
    database.save()
    assert PostgresDatabase.objects.get(pk=database.pk).password == ""

    # The password typed again with the move, even the same one, is kept.
    database.port += 1
    database.password = PG_PASSWORD
    database.save()
    assert PostgresDatabase.objects.get(pk=database.pk).password == PG_PASSWORD

    # ...but only for that save: the next move without it drops it again.
    database.port -= 1
    database.save()
    assert PostgresDatabase.objects.get(pk=database.pk).password == ""

    # A password never loaded (deferred) is dropped all the same, and so with
    # update_fields naming only the connection field.
    system_save(system=_with_password(database.pk, PG_PASSWORD))
    deferred = PostgresDatabase.objects.defer("password").get(pk=database.pk)
    deferred.host = "127.0.0.2"
    deferred.save()
    assert PostgresDatabase.objects.get(pk=database.pk).password == ""
    system_save(system=_with_password(database.pk, PG_PASSWORD))
    loaded = PostgresDatabase.objects.get(pk=database.pk)
    loaded.port = 6543
    loaded.save(update_fields=["port"])
    assert PostgresDatabase.objects.get(pk=database.pk).password == ""

    # Loading through the base System row (as every list does) is no way around it.
    system_save(system=_with_password(database.pk, PG_PASSWORD))
    from opsportal.systems.models import System

    specific = System.objects.get(pk=database.pk).specific()
    specific.username = "someone-else"
    specific.save()
    assert PostgresDatabase.objects.get(pk=database.pk).password == ""


def _with_password(pk: int, password: str) -> PostgresDatabase:
    database = PostgresDatabase.objects.get(pk=pk)
    database.password = password
    return database


def test_moving_an_http_endpoint_does_not_send_its_authorization_header(role_client):
    devops = role_client("DevOps")
    with realsystems.http_server() as original, realsystems.http_server() as elsewhere:
        endpoint = system_save(
            system=HttpEndpoint(
                name="api",
                url=original.url + "/health",
                authorization_header=API_AUTHORIZATION,
                timeout_seconds=2,
            )
        )
        form = {
            "name": "api",
            "description": "",
            "critical": "on",
            "check_interval_seconds": "30",
            "url": elsewhere.url + "/health",
            "method": "GET",
            "expected_status": "200",
            "timeout_seconds": "2",
            "verify_tls": "on",
            "authorization_header": "",
            "latency_target_ms": "200",
            "container_name": "",
        }
        change_url = f"/admin/systems/httpendpoint/{endpoint.pk}/change/"
        test_url = f"/admin/systems/httpendpoint/{endpoint.pk}/test-connection/"
        page = devops.post(change_url, form, follow=True).content.decode()
        assert "authorization header of api was dropped because the url changed" in page
        assert "Connection OK" in devops.post(test_url, follow=True).content.decode()
        [(_, headers)] = elsewhere.requests
        assert "Authorization" not in headers
        assert original.requests == []

        # Control: entered again, the same server receives it.
        devops.post(change_url, {**form, "authorization_header": "Bearer typed-again"})
        devops.post(test_url)
        assert elsewhere.requests[-1][1]["Authorization"] == "Bearer typed-again"


def test_moving_a_redis_cache_does_not_send_its_password(role_client):
    devops = role_client("DevOps")
    with realsystems.password_redis(REDIS_PASSWORD) as port:
        cache = system_save(
            system=RedisCache(
                name="cache",
                host="127.0.0.1",
                port=port,
                password=REDIS_PASSWORD,
                timeout_seconds=1,
            )
        )
        form = {
            "name": "cache",
            "description": "",
            "critical": "on",
            "check_interval_seconds": "30",
            "host": "127.0.0.1",
            "db": "0",
            "username": "",
            "password": "",
            "timeout_seconds": "1",
            "container_name": "",
        }
        change_url = f"/admin/systems/rediscache/{cache.pk}/change/"
        test_url = f"/admin/systems/rediscache/{cache.pk}/test-connection/"
        assert "Connection OK" in devops.post(test_url, follow=True).content.decode()
        with realsystems.recording_listener() as listener:
            page = devops.post(change_url, {**form, "port": listener.port}, follow=True)
            assert "password of cache was dropped because the port changed" in (
                page.content.decode()
            )
            devops.post(test_url)
            assert REDIS_PASSWORD.encode() not in listener.wait_for_bytes()
        with realsystems.recording_listener() as listener:
            devops.post(change_url, {**form, "port": listener.port, "password": "typed-again"})
            devops.post(test_url)
            assert b"typed-again" in listener.wait_for_bytes()


def test_moving_a_docker_engine_drops_its_tls_key(role_client, tls_engine_material):
    devops = role_client("DevOps")
    # Registered as read from the files, final newlines included; the form strips them,
    # which is not a change of certificate.
    engine = system_save(system=DockerEngine(name="swarm", **tls_engine_material))
    material = {name: value.strip() for name, value in tls_engine_material.items()}
    form = {
        "name": "swarm",
        "description": "",
        "critical": "on",
        "check_interval_seconds": "30",
        "base_url": "tcp://127.0.0.1:1",
        "tls_verify": "on",
        "tls_ca_cert": material["tls_ca_cert"],
        "tls_client_cert": material["tls_client_cert"],
        "tls_client_key": "",
        "timeout_seconds": "5",
        "container_name": "",
    }
    change_url = f"/admin/systems/dockerengine/{engine.pk}/change/"
    page = devops.post(change_url, form, follow=True).content.decode()
    assert "The stored tls client key of swarm was dropped because the base url changed" in page
    engine.refresh_from_db()
    assert engine.base_url == "tcp://127.0.0.1:1"
    assert engine.tls_client_key == ""

    # Back at the real engine with the key entered again: it works.
    devops.post(
        change_url,
        {
            **form,
            "base_url": material["base_url"],
            "tls_client_key": material["tls_client_key"],
        },
    )
    engine.refresh_from_db()
    assert engine.tls_client_key == material["tls_client_key"]
    test_url = f"/admin/systems/dockerengine/{engine.pk}/test-connection/"
    assert "Connection OK" in devops.post(test_url, follow=True).content.decode()


def test_editing_a_tls_engine_without_moving_it_keeps_its_key(role_client, tls_engine_material):
    """The stored PEM text ends with a newline the form strips: not a re-pointing."""
    devops = role_client("DevOps")
    engine = system_save(system=DockerEngine(name="swarm", **tls_engine_material))
    response = devops.post(
        f"/admin/systems/dockerengine/{engine.pk}/change/",
        {
            "name": "swarm",
            "description": "the Swarm manager",
            "critical": "on",
            "check_interval_seconds": "60",
            "base_url": tls_engine_material["base_url"],
            "tls_verify": "on",
            "tls_ca_cert": tls_engine_material["tls_ca_cert"],
            "tls_client_cert": tls_engine_material["tls_client_cert"],
            "tls_client_key": "",
            "timeout_seconds": "8",
            "container_name": "",
        },
    )
    assert response.status_code == 302
    engine.refresh_from_db()
    assert (engine.description, engine.timeout_seconds) == ("the Swarm manager", 8)
    assert engine.tls_client_key == tls_engine_material["tls_client_key"]


def engine_form(engine: DockerEngine, **overrides) -> dict:
    return {
        "name": engine.name,
        "description": engine.description,
        "critical": "on",
        "check_interval_seconds": "30",
        "base_url": engine.base_url,
        "tls_verify": "on",
        "tls_ca_cert": "",
        "tls_client_cert": "",
        "tls_client_key": "",
        "timeout_seconds": "5",
        "container_name": "",
        **overrides,
    }


def test_moving_an_engine_drops_the_secrets_of_the_databases_reached_through_it(
    role_client, docker_host
):
    """A database "inside a container" is reached through its engine (the container's
    address, `docker exec … pg_dump` with the password in the environment): whoever may
    edit engines but not databases must not point the engine at a daemon of their own and
    have the next check or backup hand that daemon the database's passwords."""
    devops = role_client("DevOps")
    engine = system_save(system=DockerEngine(name="platform", base_url=docker_host))
    database = system_save(
        system=PostgresDatabase(
            name="orders-db",
            dbname="orders",
            username="app",
            password="engine-Pg-Secret-1",
            operator_username="postgres",
            operator_password="engine-Operator-Secret-2",
            docker_engine=engine,
            container_name="orders-postgres",
        )
    )
    cache = system_save(system=RedisCache(name="sessions", host="10.0.0.9", password="kept-3"))
    change_url = f"/admin/systems/dockerengine/{engine.pk}/change/"

    # Renaming the engine moves nothing: the database keeps both secrets.
    assert devops.post(change_url, engine_form(engine, description="the host")).status_code == 302
    database.refresh_from_db()
    assert (database.password, database.operator_password) == (
        "engine-Pg-Secret-1",
        "engine-Operator-Secret-2",
    )

    page = devops.post(
        change_url, engine_form(engine, base_url="tcp://127.0.0.1:1"), follow=True
    ).content.decode()
    assert "of orders-db, which runs on platform" in page
    database.refresh_from_db()
    assert (database.password, database.operator_password) == ("", "")
    # A system not on that engine keeps its secret.
    cache.refresh_from_db()
    assert cache.password == "kept-3"
    record = AuditRecord.objects.get(
        object_type="systems.dockerengine", object_id=str(engine.pk), changes__dependent="orders-db"
    )
    assert record.actor_name == "user-devops"
    assert set(record.changes["secrets_dropped"]) == {"password", "operator_password"}
    assert "engine-Pg-Secret-1" not in str(AuditRecord.objects.values_list("changes", "message"))
