"""Systems through the API: the newest collection of a real PostgreSQL with the key figures
the overview shows (marked where beyond an alert rule's line), and never a secret nor whether
one is set, for a Viewer as for a superuser."""

from __future__ import annotations

import json

import psycopg
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from opsportal.monitoring import services
from opsportal.monitoring.catalogue import KEY_METRICS
from opsportal.monitoring.models import AlertRule, CollectionSchedule
from opsportal.systems.models import PostgresDatabase, RedisCache
from tests import realsystems

pytestmark = pytest.mark.django_db

PASSWORD = "pw-never-in-the-api-4f1c"
OPERATOR_PASSWORD = "operator-pw-never-in-the-api-9d2e"


@pytest.fixture
def database(target_database_dsn):
    info = psycopg.conninfo.conninfo_to_dict(target_database_dsn)
    return PostgresDatabase.objects.create(
        name="orders-db",
        host=info.get("host", "127.0.0.1"),
        port=int(info.get("port", 5432)),
        dbname=info["dbname"],
        username=info.get("user", "postgres"),
        # Trust authentication on the test server: the passwords are stored, never needed.
        password=PASSWORD,
        operator_username="postgres",
        operator_password=OPERATOR_PASSWORD,
        connect_timeout_seconds=2,
    )


@pytest.mark.parametrize("role", ["Viewers", "superuser"])
def test_a_system_shows_its_newest_collection_and_no_secret(api_client, database, role):
    AlertRule.objects.create(
        name="Any connection in use",
        metric="pg_connections_used_percent",
        comparison="gt",
        threshold=-1,
        system_kind="postgres",
    )
    collected = services.collection_run_due()
    assert [c.system.pk for c in collected.collected] == [database.pk]
    client, _, _ = api_client(role)

    listed = client.get("/api/v1/systems/")
    one = client.get(f"/api/v1/systems/{database.pk}/")

    assert listed.status_code == one.status_code == 200, listed.content
    [row] = listed.json()["results"]
    assert row == one.json()
    reading = row["collection"]
    assert reading["up"] is True and reading["collected_at"]
    figures = {f["metric"]: f for f in reading["key_figures"]}
    assert list(figures) == list(KEY_METRICS["postgres"])
    used = figures["pg_connections_used_percent"]
    assert 0 < used["value"] <= 100 and used["unit"] == "%" and used["at"]
    assert used["beyond"] == "above -1 %" and used["stale"] is False
    assert figures["pg_long_running_queries"]["beyond"] == ""
    for body in (listed.content.decode(), one.content.decode()):
        assert PASSWORD not in body and OPERATOR_PASSWORD not in body
        assert "password" not in body and "_set" not in body and "secret" not in body


def test_a_system_never_collected_says_so(api_client, database):
    client, _, _ = api_client("Viewers")
    reading = client.get(f"/api/v1/systems/{database.pk}/").json()["collection"]
    assert reading["up"] is None and reading["collected_at"] is None
    assert [(f["metric"], f["value"]) for f in reading["key_figures"]] == [
        (metric, None) for metric in KEY_METRICS["postgres"]
    ]


def test_the_list_reads_the_figures_in_the_same_queries_however_many_systems(api_client, database):
    client, _, _ = api_client("Viewers")
    services.collection_run_due()
    client.get("/api/v1/systems/")  # the process's first request fills Django's own caches
    with CaptureQueriesContext(connection) as one_system:
        assert len(client.get("/api/v1/systems/").json()["results"]) == 1
    RedisCache.objects.create(name="sessions", host="127.0.0.1", port=6379)
    services.collection_run_due()
    with CaptureQueriesContext(connection) as two_systems:
        answer = client.get("/api/v1/systems/").json()
    assert [s["name"] for s in answer["results"]] == ["orders-db", "sessions"]
    assert json.dumps(answer).count('"up": true') == 2
    assert len(two_systems) == len(one_system)


def test_a_system_gone_down_shows_its_last_figures_as_stale(api_client, database):
    services.collection_run_due()
    # The database stops answering: its port closed.
    database.port = realsystems.free_port()
    database.save()
    CollectionSchedule.objects.update(next_due_at=None)
    services.collection_run_due()
    client, _, _ = api_client("Viewers")
    reading = client.get(f"/api/v1/systems/{database.pk}/").json()["collection"]
    assert reading["up"] is False
    used = {f["metric"]: f for f in reading["key_figures"]}["pg_connections_used_percent"]
    assert used["value"] is not None and used["stale"] is True
    assert used["at"] < reading["collected_at"]
