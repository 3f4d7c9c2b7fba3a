"""Issue 16, failure 2: connection use is measured against the slots the application's user
can actually get, so an exhausted application fires "Database connection use above 90%".

The server: max_connections=20, superuser_reserved_connections=3, an application role
"app" (not a superuser): it is refused at its 18th connection, at 85% of max_connections."""

import datetime as dt

import pytest

from incidents.models import Incident
from incidents.services import incidents_load_defaults
from opsportal.monitoring import services
from opsportal.monitoring.models import AlertRule, AlertState, AlertStatus, LatestValue
from opsportal.systems.models import PostgresDatabase
from tests.limited_postgres import APP_PASSWORD, SUPERUSER_PASSWORD
from tests.monitoring.conftest import collect_now

RULE = "Database connection use above 90%"


@pytest.fixture
def defaults(db):
    incidents_load_defaults()
    services.monitoring_load_defaults()


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


def figures(database) -> dict[str, float]:
    return {
        row.metric: row.value
        for row in LatestValue.objects.filter(system=database, metric__startswith="pg_connections")
    }


def past_the_for_duration(database) -> None:
    """The collected figures evaluated again as if their samples were 61 s later: the
    default rule's for-duration (60 s) elapses without the test waiting a minute."""
    rule = AlertRule.objects.get(name=RULE)
    rows = LatestValue.objects.filter(system=database, metric=rule.metric)
    services.alerts_evaluate(
        values={
            (database.pk, r.metric, r.subject): (r.value, r.at + dt.timedelta(seconds=61))
            for r in rows
        },
        systems={database.pk: database},
    )


def test_an_exhausted_app_fires_the_default_rule(defaults, limited_postgres):
    """17 idle app connections: the app is refused, 85% of max_connections, 100% of what it
    can get. The operator credential lets the collector in to see it."""
    rule = AlertRule.objects.get(name=RULE)
    assert (rule.metric, rule.comparison, rule.threshold, rule.for_seconds) == (
        "pg_connections_usable_percent", "ge", 90, 60,
    )  # fmt: skip
    database = register(
        limited_postgres, operator_username="postgres", operator_password=SUPERUSER_PASSWORD
    )
    limited_postgres.exhaust(limited_postgres.usable_by_app)
    collect_now()
    assert figures(database) == {
        "pg_connections_active": 0,
        "pg_connections_idle": 17,
        "pg_connections_idle_in_transaction": 0,
        "pg_connections_waiting": 0,
        "pg_connections_max": 20,
        # The old figure: the collector's own connection counted, 18 of 20.
        "pg_connections_used_percent": 90.0,
        "pg_connections_usable_max": 17,
        "pg_connections_available_to_user": 0,
        "pg_connections_usable_percent": 100.0,
    }
    assert AlertState.objects.get(rule=rule, system=database).status == AlertStatus.PENDING
    past_the_for_duration(database)
    state = AlertState.objects.get(rule=rule, system=database)
    assert state.status == AlertStatus.FIRING
    (incident,) = Incident.objects.filter(
        alert_fingerprint__startswith=f"monitoring:rule-{rule.pk}:"
    )
    assert incident.runbook.name == "Database Connection Issues"
    assert "pg_connections_usable_percent" in incident.symptoms


def test_near_the_ceiling_fires_without_an_operator_credential(defaults, limited_postgres):
    """16 app connections and the collector as the app user (the 17th): 16 of the 17 usable
    slots are held by others, 94%; against max_connections it was 85%, which never fired."""
    database = register(limited_postgres)
    limited_postgres.exhaust(limited_postgres.usable_by_app - 1)
    collect_now()
    seen = figures(database)
    assert seen["pg_connections_used_percent"] == 85.0
    assert seen["pg_connections_usable_max"] == 17
    assert seen["pg_connections_available_to_user"] == 1
    assert seen["pg_connections_usable_percent"] == pytest.approx(16 / 17 * 100, abs=0.01)
    past_the_for_duration(database)
    rule = AlertRule.objects.get(name=RULE)
    assert AlertState.objects.get(rule=rule, system=database).status == AlertStatus.FIRING


def test_a_role_connection_limit_is_the_nearer_ceiling(db, limited_postgres):
    with limited_postgres.connect_as_superuser() as admin:
        admin.execute("ALTER ROLE app CONNECTION LIMIT 5")
    try:
        database = register(
            limited_postgres, operator_username="postgres", operator_password=SUPERUSER_PASSWORD
        )
        limited_postgres.exhaust(4)
        collect_now()
        seen = figures(database)
        assert seen["pg_connections_usable_max"] == 5
        assert seen["pg_connections_available_to_user"] == 1
        assert seen["pg_connections_usable_percent"] == 80.0
    finally:
        with limited_postgres.connect_as_superuser() as admin:
            admin.execute("ALTER ROLE app CONNECTION LIMIT -1")


def test_a_superuser_registration_can_have_every_slot(db, limited_postgres):
    database = register(limited_postgres)
    database.username, database.password = "postgres", SUPERUSER_PASSWORD
    database.save()
    limited_postgres.exhaust(10)
    collect_now()
    seen = figures(database)
    assert seen["pg_connections_usable_max"] == 20
    assert seen["pg_connections_usable_percent"] == 50.0


def test_an_unedited_rule_loaded_before_moves_to_the_usable_slots(defaults):
    import importlib

    from django.apps import apps

    migration = importlib.import_module(
        "opsportal.monitoring.migrations.0002_connections_usable_by_the_app"
    )
    AlertRule.objects.filter(name=RULE).update(
        metric="pg_connections_used_percent", comparison="gt"
    )
    migration.measure_against_usable_slots(apps, None)
    rule = AlertRule.objects.get(name=RULE)
    assert (rule.metric, rule.comparison) == ("pg_connections_usable_percent", "ge")
    # An operator's own threshold is theirs: left alone.
    AlertRule.objects.filter(name=RULE).update(
        metric="pg_connections_used_percent", comparison="gt", threshold=80
    )
    migration.measure_against_usable_slots(apps, None)
    assert AlertRule.objects.get(name=RULE).metric == "pg_connections_used_percent"


def test_monitoring_reads_as_the_app_user_and_as_operator_only_when_refused(db, limited_postgres):
    from opsportal.systems.adapters import pg_activity

    database = register(
        limited_postgres, operator_username="postgres", operator_password=SUPERUSER_PASSWORD
    )
    limited_postgres.exhaust(3)
    assert pg_activity.connection_figures(database).access.method == "registered user"
    limited_postgres.exhaust(limited_postgres.usable_by_app - 3)
    exhausted = pg_activity.connection_figures(database)
    assert exhausted.access.method == "operator credential"
    assert (exhausted.ceiling.in_use, exhausted.ceiling.available) == (17, 0)
