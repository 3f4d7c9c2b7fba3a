"""Configuration backups: deterministic export into Git, and import into an empty portal."""

import subprocess

from django.core.management import call_command
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from backups import services
from backups.models import BackupPlan
from opsportal import configuration
from opsportal.people.models import Contact, OnCallRotation, RotationMember, Team
from opsportal.schedules import periodic_task_ensure
from opsportal.systems.models import DockerEngine, PostgresDatabase, System


def git(repo, *args) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def build_configuration():
    engine = DockerEngine.objects.create(
        name="prod-engine", base_url="tcp://10.0.0.5:2376", tls_client_key="KEY-SECRET"
    )
    database = PostgresDatabase.objects.create(
        name="orders-db",
        host="",
        dbname="orders",
        password="PG-SECRET",
        docker_engine=engine,
        container_name="orders_postgres",
    )
    team = Team.objects.create(name="DBA", responsibility="database", email="dba@example.com")
    ana = Contact.objects.create(name="Ana", team=team, email="ana@example.com")
    rotation = OnCallRotation.objects.create(
        name="DBA week", team=team, handoff_at="2026-01-05T09:00:00Z"
    )
    RotationMember.objects.create(rotation=rotation, contact=ana, position=0)
    plan = services.backup_plan_ensure(database=database)
    plan.schedule, plan.method, plan.keep_daily = "30 1 * * *", "container", 10
    services.backup_plan_save(plan=plan)
    periodic_task_ensure(name="Sweep backups", task="backups.sweep", every_seconds=60)


def wipe_configuration():
    """An empty portal: none of the exported rows exist."""
    BackupPlan.objects.all().delete()
    PeriodicTask.objects.all().delete()
    CrontabSchedule.objects.all().delete()
    IntervalSchedule.objects.all().delete()
    RotationMember.objects.all().delete()
    OnCallRotation.objects.all().delete()
    Contact.objects.all().delete()
    Team.objects.all().delete()
    System.objects.filter(kind="postgres").delete()
    System.objects.all().delete()


def test_export_is_deterministic_committed_and_secret_free(db, tmp_path, superuser):
    build_configuration()
    repo = tmp_path / "config-repo"

    first = services.configuration_backup(actor=superuser, directory=repo)
    second = services.configuration_backup(actor=superuser, directory=repo)

    assert first.committed and not second.committed
    assert first.commit == second.commit
    assert git(repo, "log", "--format=%an <%ae>") == "root <root@example.com>"
    exported = "".join(p.read_text() for p in repo.rglob("*.json"))
    assert "orders-db" in exported and "orders_postgres" in exported
    assert "PG-SECRET" not in exported and "KEY-SECRET" not in exported
    assert configuration.configuration_dump() == configuration.configuration_dump()

    Contact.objects.filter(name="Ana").update(email="ana@new.example.com")
    third = services.configuration_backup(directory=repo)
    assert third.committed and third.commit != first.commit
    assert "people/contact.json" in git(repo, "show", "--name-only", "--format=", "HEAD")


def test_import_reproduces_the_configuration_on_an_empty_portal(db, tmp_path):
    build_configuration()
    repo = tmp_path / "config-repo"
    call_command("config_export", repo=str(repo))
    before = configuration.configuration_dump()

    wipe_configuration()
    assert configuration.configuration_dump() != before
    call_command("config_import", str(repo))

    assert configuration.configuration_dump() == before
    plan = BackupPlan.objects.get(database__name="orders-db")
    assert plan.periodic_task.crontab.hour == "1" and plan.periodic_task.args == f"[{plan.pk}]"
    # Importing again changes nothing.
    call_command("config_import", str(repo))
    assert configuration.configuration_dump() == before


def test_export_pushes_to_a_configured_remote(db, tmp_path, settings):
    build_configuration()
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    settings.CONFIG_BACKUP_REMOTE = str(remote)

    result = services.configuration_backup(directory=tmp_path / "repo")

    assert result.pushed
    assert git(remote, "rev-parse", "main") == result.commit


def test_alert_rules_and_the_systems_they_name_round_trip(db, tmp_path):
    from opsportal.monitoring.models import AlertRule
    from opsportal.monitoring.services import monitoring_load_defaults

    monitoring_load_defaults()
    api = PostgresDatabase.objects.create(name="orders-db", host="db.internal", dbname="o")
    rule = AlertRule.objects.order_by("name").first()
    rule.systems.set([api])
    repo = tmp_path / "config-repo"
    call_command("config_export", repo=str(repo))
    before = configuration.configuration_dump()
    rules = AlertRule.objects.count()
    AlertRule.objects.all().delete()
    System.objects.all().delete()
    call_command("config_import", str(repo))
    assert configuration.configuration_dump() == before
    assert AlertRule.objects.count() == rules
    assert list(AlertRule.objects.get(name=rule.name).systems.values_list("name", flat=True)) == [
        "orders-db"
    ]
