"""Maintenance plans and recurring security tasks are part of the configuration backup:
config_export, then config_import into an emptied portal, reproduces them (and their
upcoming windows and due dates are generated again from the rules)."""

import datetime as dt
import json
from zoneinfo import ZoneInfo

import pytest
from django.core.management import call_command
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from maintenance.models import (
    MaintenancePlan,
    MaintenanceWindow,
    RecurringTask,
    TaskKind,
    TaskOccurrence,
    WindowKind,
)
from maintenance.services import maintenance_load_defaults, plan_save
from opsportal import configuration
from opsportal.people.models import (
    Contact,
    OnCallRotation,
    Responsibility,
    RotationMember,
    Team,
    WebhookChannel,
)
from opsportal.people.services import people_load_defaults

pytestmark = pytest.mark.django_db


def build_configuration(superuser):
    people_load_defaults()
    maintenance_load_defaults()  # the runbook's three plans and four security tasks
    security = Team.objects.get(responsibility=Responsibility.SECURITY)
    room = WebhookChannel.objects.create(
        name="users-room", team=security, url="https://hooks.example.com/services/T/B/SECRET-9"
    )
    plan_save(
        plan=MaintenancePlan(
            name="Paris database patching",
            kind=WindowKind.QUARTERLY_SECURITY,
            rrule="FREQ=MONTHLY;BYMONTH=3,6,9,12;BYDAY=SU;BYSETPOS=-1",
            first_start=dt.datetime(2026, 3, 29, 1, 0, tzinfo=dt.UTC),
            time_zone="Europe/Paris",
            duration_minutes=90,
            expected_impact="Read-only for 10 minutes.",
            rollback_plan="Fail back to the replica.",
            emails="users@example.com, dba@example.com",
            webhook=room,
            announce_lead_hours="48,2",
            owner=superuser,
        ),
        actor=superuser,
    )
    RecurringTask.objects.create(
        name="Rotate TLS certificates",
        kind=TaskKind.OTHER,
        team=security,
        rrule="FREQ=MONTHLY;INTERVAL=2;BYMONTHDAY=10",
        first_due=dt.datetime(2026, 1, 10, 9, 0, tzinfo=dt.UTC),
        time_zone="Europe/Paris",
        description="Renew and deploy the certificates.",
        generate_ahead_days=120,
    )


def wipe_configuration():
    """An empty portal: no plans, tasks, windows, teams or schedules."""
    MaintenanceWindow.objects.all().delete()
    MaintenancePlan.objects.all().delete()
    TaskOccurrence.objects.all().delete()
    RecurringTask.objects.all().delete()
    PeriodicTask.objects.all().delete()
    CrontabSchedule.objects.all().delete()
    IntervalSchedule.objects.all().delete()
    WebhookChannel.objects.all().delete()
    RotationMember.objects.all().delete()
    OnCallRotation.objects.all().delete()
    Contact.objects.all().delete()
    Team.objects.all().delete()


def test_export_then_import_into_an_empty_portal_reproduces_plans_and_tasks(tmp_path, superuser):
    build_configuration(superuser)
    repo = tmp_path / "config-repo"
    call_command("config_export", repo=str(repo))
    before = configuration.configuration_dump()

    plans = json.loads((repo / "maintenance/maintenanceplan.json").read_text())
    assert [row["key"] for row in plans["rows"]] == [
        ["Annual major version upgrades"],
        ["Monthly maintenance"],
        ["Paris database patching"],
        ["Quarterly security updates and patches"],
    ]
    paris = next(r["fields"] for r in plans["rows"] if r["key"] == ["Paris database patching"])
    assert paris["rrule"] == "FREQ=MONTHLY;BYMONTH=3,6,9,12;BYDAY=SU;BYSETPOS=-1"
    assert paris["time_zone"] == "Europe/Paris" and paris["announce_lead_hours"] == "48,2"
    # No secrets and no user accounts: the webhook's URL and the owner are not exported.
    exported = "".join(p.read_text() for p in repo.rglob("*.json"))
    assert "SECRET-9" not in exported
    assert "webhook" not in paris and "owner" not in paris
    tasks = json.loads((repo / "maintenance/recurringtask.json").read_text())
    assert len(tasks["rows"]) == 5
    tls = next(r["fields"] for r in tasks["rows"] if r["key"] == ["Rotate TLS certificates"])
    assert tls["team"] == ["Security team"]  # by natural key, not by primary key
    # Windows and due dates are not configuration: they are history or derived again.
    assert not (repo / "maintenance/maintenancewindow.json").exists()

    wipe_configuration()
    assert not MaintenancePlan.objects.exists() and not RecurringTask.objects.exists()
    call_command("config_import", str(repo))

    assert configuration.configuration_dump() == before
    plan = MaintenancePlan.objects.get(name="Paris database patching")
    assert plan.first_start == dt.datetime(2026, 3, 29, 1, 0, tzinfo=dt.UTC)
    assert plan.email_list == ["users@example.com", "dba@example.com"]
    # Their upcoming windows and due dates are generated again from the rules.
    assert MaintenanceWindow.objects.filter(plan__name="Monthly maintenance").count() >= 5
    assert plan.windows.exists()
    for window in plan.windows.all():
        # Read in Paris time: 03:00 local on the last Sunday of the quarter's last month.
        local = window.starts_at.astimezone(ZoneInfo("Europe/Paris"))
        assert (local.weekday(), local.hour, local.month % 3) == (6, 3, 0)
        assert window.duration == dt.timedelta(minutes=90)
    tls_task = RecurringTask.objects.get(name="Rotate TLS certificates")
    assert tls_task.team.name == "Security team"
    assert tls_task.occurrences.exists()
    assert all(o.due_at.day == 10 for o in tls_task.occurrences.all())

    # Importing again creates nothing and changes nothing.
    windows = MaintenanceWindow.objects.count()
    call_command("config_import", str(repo))
    assert configuration.configuration_dump() == before
    assert MaintenanceWindow.objects.count() == windows


def test_a_plans_affected_systems_survive_export_and_import(tmp_path, superuser):
    from opsportal.systems.models import PostgresDatabase, RedisCache, System

    maintenance_load_defaults()
    orders = PostgresDatabase.objects.create(name="orders-db", host="db.internal", dbname="o")
    sessions = RedisCache.objects.create(name="sessions-cache", host="cache.internal")
    monthly = MaintenancePlan.objects.get(name="Monthly maintenance")
    monthly.systems.set([orders, sessions])
    repo = tmp_path / "config-repo"
    call_command("config_export", repo=str(repo))
    plans = json.loads((repo / "maintenance/maintenanceplan.json").read_text())
    exported = next(r["fields"] for r in plans["rows"] if r["key"] == ["Monthly maintenance"])
    assert exported["systems"] == [["orders-db"], ["sessions-cache"]]  # by name, not by pk
    before = configuration.configuration_dump()

    wipe_configuration()
    System.objects.all().delete()
    call_command("config_import", str(repo))

    assert configuration.configuration_dump() == before
    restored = MaintenancePlan.objects.get(name="Monthly maintenance")
    assert sorted(s.name for s in restored.systems.all()) == ["orders-db", "sessions-cache"]
