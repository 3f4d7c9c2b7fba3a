"""A database registered by any path gets its default backup plan (the README's promise),
dumped the way it was registered; the plan is created once and audited."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from backups.models import BackupMethod, BackupPlan
from opsportal.audit.models import AuditRecord
from opsportal.defaults import load_defaults
from opsportal.systems.models import PostgresDatabase
from tests.backups.conftest import admin_dsn

# Real commits, as in production: the plan is made when the registration commits, still
# inside the admin's request (so it is audited under the person who registered).
pytestmark = pytest.mark.django_db(transaction=True)


def pg_form(**overrides) -> dict:
    import psycopg

    info = psycopg.conninfo.conninfo_to_dict(admin_dsn())
    return {
        "name": "orders-db",
        "description": "",
        "critical": "on",
        "check_interval_seconds": "30",
        "host": info.get("host", "127.0.0.1"),
        "port": str(info.get("port", 5432)),
        "dbname": "postgres",
        "username": "postgres",
        "password": "",
        "sslmode": "prefer",
        "connect_timeout_seconds": "3",
        "docker_engine": "",
        "container_name": "",
        **overrides,
    }


@pytest.fixture
def database_admin(client):
    load_defaults()
    user = get_user_model().objects.create_user("dora-dba", password="dba-pass-123", is_staff=True)
    user.groups.add(Group.objects.get(name="Database admins"))
    client.force_login(user)
    return user


def register(client, **form) -> PostgresDatabase:
    response = client.post("/admin/systems/postgresdatabase/add/", pg_form(**form))
    assert response.status_code == 302, response.content.decode()[-3000:]
    return PostgresDatabase.objects.get(name=form.get("name", "orders-db"))


def test_a_database_registered_in_the_admin_gets_a_network_plan_once(client, database_admin):
    database = register(client)

    plan = BackupPlan.objects.get(database=database)
    assert plan.method == BackupMethod.NETWORK
    assert plan.enabled and plan.schedule == "0 2 * * *"
    assert plan.periodic_task is not None and plan.periodic_task.task == "backups.run_scheduled"
    created = AuditRecord.objects.get(
        object_type="backups.backupplan", object_id=str(plan.pk), action="create"
    )
    assert created.actor == database_admin

    # Saving the registration again (a changed description) keeps the one plan.
    response = client.post(
        f"/admin/systems/postgresdatabase/{database.pk}/change/",
        pg_form(description="the orders service's database"),
    )
    assert response.status_code == 302
    assert BackupPlan.objects.filter(database=database).count() == 1
    assert BackupPlan.objects.get(database=database).pk == plan.pk


def test_a_database_registered_inside_a_container_is_dumped_with_docker_exec(
    client, database_admin, docker_engine
):
    database = register(
        client,
        name="orders-db-in-container",
        host="",
        docker_engine=str(docker_engine.pk),
        container_name="orders-postgres",
    )

    assert database.runs_in_container
    plan = BackupPlan.objects.get(database=database)
    assert plan.method == BackupMethod.CONTAINER
    assert AuditRecord.objects.filter(
        object_type="backups.backupplan", object_id=str(plan.pk), actor=database_admin
    ).exists()


def test_a_configuration_import_keeps_exported_plans_and_plans_the_rest(tmp_path):
    """Imported databases are registrations too: one whose plan was exported gets that plan
    (its schedule and method, not a default made first), one without gets the default."""
    from backups import services
    from tests.backups.test_configuration import wipe_configuration

    planned = PostgresDatabase.objects.create(name="orders-db", host="db1", dbname="orders")
    plan = BackupPlan.objects.get(database=planned)  # made on registration
    plan.schedule, plan.keep_daily = "30 1 * * *", 10
    services.backup_plan_save(plan=plan)
    unplanned = PostgresDatabase.objects.create(name="billing-db", host="db2", dbname="billing")
    BackupPlan.objects.filter(database=unplanned).delete()
    services.configuration_backup(directory=tmp_path / "repo")
    wipe_configuration()

    services.configuration_restore(directory=tmp_path / "repo")

    imported = BackupPlan.objects.get(database__name="orders-db")
    assert (imported.schedule, imported.keep_daily) == ("30 1 * * *", 10)
    default = BackupPlan.objects.get(database__name="billing-db")
    assert (default.schedule, default.method) == ("0 2 * * *", BackupMethod.NETWORK)
    assert BackupPlan.objects.count() == 2
