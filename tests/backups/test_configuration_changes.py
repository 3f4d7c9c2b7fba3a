"""The runbook's "Configuration Backups ... committed automatically after changes": admin
saves are recorded and committed once per burst, authored by the editor; saves that change
no exported bytes make no commit. And the incidents app's runbooks round-trip."""

from __future__ import annotations

import datetime as dt
import json
import subprocess

from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from backups import services
from backups.models import BackupPlan, ConfigurationChange
from backups.tasks import commit_configuration_changes
from incidents.models import Runbook, RunbookStep
from incidents.services import incidents_load_defaults
from opsportal import configuration
from opsportal.systems.models import PostgresDatabase


def git(repo, *args) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def commits(repo) -> list[str]:
    return git(repo, "log", "--format=%H").splitlines()


def plan_form(plan: BackupPlan, **changes) -> dict:
    fields = {
        "database": plan.database_id,
        "enabled": "on" if plan.enabled else "",
        "schedule": plan.schedule,
        "method": plan.method,
        "format": plan.format,
        "compression": plan.compression,
        "storage_location": plan.storage_location,
        "keep_daily": plan.keep_daily,
        "keep_weekly": plan.keep_weekly,
        "keep_monthly": plan.keep_monthly,
        "time_limit_seconds": plan.time_limit_seconds,
        "open_incident_on_failure": "on" if plan.open_incident_on_failure else "",
        "suspicious_row_drop_percent": plan.suspicious_row_drop_percent,
    }
    fields.update(changes)
    return {name: value for name, value in fields.items() if value != ""}


def save_in_admin(client, plan: BackupPlan, **changes) -> None:
    url = reverse("admin:backups_backupplan_change", args=[plan.pk])
    response = client.post(url, plan_form(plan, **changes))
    assert response.status_code == 302, response.content.decode()[:3000]


def after_the_burst() -> dt.datetime:
    return timezone.now() + dt.timedelta(seconds=31)


def test_a_burst_of_admin_saves_makes_one_commit_authored_by_the_editor(
    staff_client, superuser, settings, tmp_path, django_capture_on_commit_callbacks
):
    repo = tmp_path / "config-repo"
    settings.CONFIG_BACKUP_REPO = repo
    settings.CONFIG_BACKUP_DEBOUNCE_SECONDS = 30
    database = PostgresDatabase.objects.create(name="orders-db", host="db.internal", dbname="o")
    plan = services.backup_plan_ensure(database=database)
    services.configuration_commit_changes(now=after_the_burst())  # the setup, by the system
    before = commits(repo)
    assert git(repo, "log", "-1", "--format=%an") == "OpsPortal"

    # Two admin saves in a row: the schedule, then retention (each also rewrites the plan's
    # beat entry). Only the first sends a commit task; it waits for the burst to end.
    with django_capture_on_commit_callbacks() as first:
        save_in_admin(staff_client, plan, schedule="30 1 * * *")
    with django_capture_on_commit_callbacks() as second:
        save_in_admin(staff_client, BackupPlan.objects.get(pk=plan.pk), keep_daily=10)
    assert len(first) == 1 and len(second) == 0
    pending = ConfigurationChange.objects.filter(committed_at=None)
    assert {c.actor_name for c in pending} == {"root"}
    assert "changed backup plan 'Backups of orders-db'" in {c.description for c in pending}

    # The task, arriving while the burst may still go on, commits nothing yet.
    assert commit_configuration_changes.apply().get() == "nothing due"
    assert commits(repo) == before

    result = services.configuration_commit_changes(now=after_the_burst())

    assert result.committed
    assert commits(repo) == [result.commit, *before]  # exactly one new commit
    assert git(repo, "log", "-1", "--format=%an <%ae>") == "root <root@example.com>"
    message = git(repo, "log", "-1", "--format=%B")
    assert message.startswith("Configuration changed by root")
    assert "changed backup plan 'Backups of orders-db'" in message
    exported = json.loads((repo / "backups/backupplan.json").read_text())
    [row] = exported["rows"]
    assert row["fields"]["schedule"] == "30 1 * * *" and row["fields"]["keep_daily"] == 10
    assert not ConfigurationChange.objects.filter(committed_at=None).exists()
    assert ConfigurationChange.objects.filter(commit=result.commit).count() >= 2

    # Saving the same form again changes no exported byte: nothing recorded, no commit.
    with django_capture_on_commit_callbacks() as again:
        save_in_admin(staff_client, BackupPlan.objects.get(pk=plan.pk))
    assert again == []
    assert not ConfigurationChange.objects.filter(committed_at=None).exists()
    assert services.configuration_commit_changes(now=after_the_burst()) is None

    # A change undone within its burst: recorded twice, but the export's bytes are the
    # same as the last commit's, so no commit.
    save_in_admin(staff_client, BackupPlan.objects.get(pk=plan.pk), keep_daily=11)
    save_in_admin(staff_client, BackupPlan.objects.get(pk=plan.pk), keep_daily=10)
    assert ConfigurationChange.objects.filter(committed_at=None).count() >= 2
    unchanged = services.configuration_commit_changes(now=after_the_burst())
    assert not unchanged.committed
    assert commits(repo) == [result.commit, *before]
    assert not ConfigurationChange.objects.filter(committed_at=None).exists()


def test_beat_bookkeeping_is_not_a_configuration_change(db, settings, tmp_path):
    """Celery beat saves every PeriodicTask after each run (last_run_at, total_run_count);
    those fields are not exported, so they must not count as changes."""
    from django_celery_beat.models import PeriodicTask

    from opsportal.schedules import periodic_task_ensure

    periodic_task_ensure(name="Sweep backups", task="backups.sweep", every_seconds=60)
    ConfigurationChange.objects.all().delete()
    task = PeriodicTask.objects.get(name="Sweep backups")
    task.last_run_at = timezone.now()
    task.total_run_count += 1
    task.save()
    assert not ConfigurationChange.objects.exists()
    task.enabled = False
    task.save()
    assert ConfigurationChange.objects.get().description.startswith(
        "changed periodic task 'Sweep backups"
    )


def test_the_sweeper_commits_changes_whose_task_was_lost(db, settings, tmp_path):
    settings.CONFIG_BACKUP_REPO = tmp_path / "config-repo"
    PostgresDatabase.objects.create(name="orders-db", host="db.internal", dbname="o")
    assert ConfigurationChange.objects.filter(committed_at=None).exists()
    # Its burst is not over: the commit task sent with it is still due to arrive.
    assert services.backups_sweep(now=timezone.now() + dt.timedelta(seconds=10)) == {
        "redispatched": 0,
        "failed": 0,
        "missed": 0,
    }
    # Long past the burst and still pending: the task was never delivered (broker down),
    # so the sweeper sends it again.
    counts = services.backups_sweep(now=timezone.now() + dt.timedelta(seconds=95))
    assert counts["redispatched"] == 1
    result = services.configuration_commit_changes(now=after_the_burst())
    assert result.committed and "created PostgreSQL database 'orders-db'" in git(
        settings.CONFIG_BACKUP_REPO, "log", "-1", "--format=%B"
    )


def test_runbooks_and_their_steps_round_trip(db, tmp_path):
    incidents_load_defaults()
    custom = Runbook.objects.create(
        name="Disk space", category="other", symptoms="Disk > 90%\nWrites fail"
    )
    RunbookStep.objects.create(
        runbook=custom, phase="investigation", position=1, text="Check usage", operation_kind=""
    )
    RunbookStep.objects.create(
        runbook=custom,
        phase="resolution",
        position=2,
        text="Restart the service",
        operation_kind="container_restart",
        operation_params={"timeout": 30},
    )
    repo = tmp_path / "config-repo"
    call_command("config_export", repo=str(repo))
    exported = json.loads((repo / "incidents/runbookstep.json").read_text())
    assert [["Disk space"], 2] in [row["key"] for row in exported["rows"]]
    before = configuration.configuration_dump()
    steps_before = RunbookStep.objects.count()
    assert steps_before > 2

    RunbookStep.objects.all().delete()
    Runbook.objects.all().delete()
    assert configuration.configuration_dump() != before
    call_command("config_import", str(repo))

    assert configuration.configuration_dump() == before
    assert RunbookStep.objects.count() == steps_before
    step = RunbookStep.objects.get(runbook__name="Disk space", position=2)
    assert step.operation_kind == "container_restart"
    assert step.operation_params == {"timeout": 30}


def test_inline_task_mode_leaves_the_burst_to_the_sweeper(
    db, django_capture_on_commit_callbacks, settings, tmp_path
):
    """With CELERY_TASK_ALWAYS_EAGER the commit task cannot wait for its burst to end; it
    must not re-send itself inline (that recursed until the stack ran out)."""
    settings.CONFIG_BACKUP_REPO = tmp_path / "config-repo"
    app = commit_configuration_changes.app
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = True
    try:
        with django_capture_on_commit_callbacks(execute=True):
            PostgresDatabase.objects.create(name="orders-db", host="db.internal", dbname="o")
        with django_capture_on_commit_callbacks(execute=True):
            services.backups_sweep(now=timezone.now() + dt.timedelta(seconds=95))
    finally:
        app.conf.task_always_eager = eager
    # The registration and the backup plan it brought (with its schedule entry) are one
    # burst, still pending.
    pending = ConfigurationChange.objects.filter(committed_at=None)
    assert sorted(pending.values_list("description", flat=True)) == [
        "created PostgreSQL database 'orders-db'",
        "created backup plan 'Backups of orders-db'",
        "created crontab '0 2 * * * (m/h/dM/MY/d) UTC'",
        "created periodic task 'Back up orders-db: 0 2 * * * (m/h/dM/MY/d) UTC'",
    ]
    result = services.configuration_commit_changes(now=after_the_burst())
    assert result.committed
