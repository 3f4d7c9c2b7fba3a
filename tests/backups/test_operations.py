"""Retention, the sweeper (dead workers, lost messages, missed schedules), staleness in
/health/detailed and /metrics, and the commands."""

import datetime as dt
import subprocess

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from backups import services
from backups.models import Backup, BackupStatus, Verification
from backups.storage import storage_for
from backups.tasks import run_backup
from opsportal.audit.models import AuditRecord
from opsportal.health import checks, metrics
from opsportal.people.models import Notification, Responsibility, Team


def run(database, **kwargs) -> Backup:
    backup = services.backup_request(database=database, **kwargs)
    run_backup.apply(args=[backup.pk])
    backup.refresh_from_db()
    return backup


def at(days_ago: int, pk: int, verified: bool = False) -> Backup:
    return Backup(
        pk=pk,
        finished_at=timezone.now() - dt.timedelta(days=days_ago),
        verification=Verification.VERIFIED if verified else Verification.PENDING,
    )


def test_retention_keeps_daily_weekly_monthly_and_the_newest_verified():
    backups = [at(d, pk=d + 1) for d in range(0, 400)]  # one a day for 400 days
    keep = services.retention_keep(backups, daily=7, weekly=4, monthly=6)
    # 7 newest days, the newest of 4 ISO weeks, of 6 months: overlaps counted once.
    assert {1, 2, 3, 4, 5, 6, 7} <= keep
    assert len(keep) <= 7 + 4 + 6
    assert max(keep) < 200  # nothing older than ~6 months survives
    only_old_verified = [at(0, 1), at(1, 2), at(30, 3, verified=True)]
    assert services.retention_keep(only_old_verified, daily=1, weekly=0, monthly=0) == {1, 3}


def test_retention_deletes_files_and_audits_each_deletion(source_database):
    plan = services.backup_plan_ensure(database=source_database)
    plan.keep_daily, plan.keep_weekly, plan.keep_monthly = 1, 0, 0
    services.backup_plan_save(plan=plan)
    older, newer = run(source_database), run(source_database)

    pruned = services.backup_plan_apply_retention(plan=plan)

    assert [b.pk for b in pruned] == [older.pk]
    older.refresh_from_db()
    assert older.pruned_at is not None and not older.is_restorable
    assert not storage_for("").exists(older.file_name)
    assert storage_for("").exists(newer.file_name)
    assert AuditRecord.objects.filter(
        object_type="backups.backup", object_id=str(older.pk), action="delete"
    ).exists()


def test_apply_retention_from_the_admin_asks_for_a_reason_before_deleting(
    source_database, staff_client, superuser
):
    from django.contrib.admin import helpers
    from django.urls import reverse

    plan = services.backup_plan_ensure(database=source_database)
    plan.keep_daily, plan.keep_weekly, plan.keep_monthly = 1, 0, 0
    services.backup_plan_save(plan=plan)
    older, newer = run(source_database), run(source_database)
    url = reverse("admin:backups_backupplan_changelist")
    chosen = {"action": "apply_retention", helpers.ACTION_CHECKBOX_NAME: [plan.pk]}

    # Choosing the action shows what would be deleted; nothing is deleted yet.
    page = staff_client.post(url, chosen)
    assert page.status_code == 200
    assert older.file_name in page.content.decode()
    assert newer.file_name not in page.content.decode()
    assert storage_for("").exists(older.file_name)
    # Confirming without a reason is refused; the file is still there.
    page = staff_client.post(url, {**chosen, "confirmed": "yes", "reason": " "})
    assert page.status_code == 200 and "This field is required" in page.content.decode()
    assert storage_for("").exists(older.file_name)

    response = staff_client.post(
        url, {**chosen, "confirmed": "yes", "reason": "disk at 95% on the backup host"}
    )
    assert response.status_code == 302
    assert not storage_for("").exists(older.file_name)
    assert storage_for("").exists(newer.file_name)
    record = AuditRecord.objects.get(
        object_type="backups.backup", object_id=str(older.pk), action="delete"
    )
    assert record.actor_id == superuser.pk
    assert record.message.endswith(": disk at 95% on the backup host")


def test_plan_schedule_drives_a_celery_beat_entry(source_database):
    plan = services.backup_plan_ensure(database=source_database)
    task = PeriodicTask.objects.get(pk=plan.periodic_task_id)
    assert task.task == "backups.run_scheduled" and task.args == f"[{plan.pk}]"
    assert (task.crontab.minute, task.crontab.hour) == ("0", "2")  # the runbook's 02:00 UTC

    plan.schedule = "30 3 * * 1-5"
    services.backup_plan_save(plan=plan)
    task.refresh_from_db()
    assert (task.crontab.minute, task.crontab.hour, task.crontab.day_of_week) == ("30", "3", "1-5")
    with pytest.raises(Exception, match="five fields"):
        services.schedule_crontab("every day")


@pytest.fixture
def dba_team(db):
    return Team.objects.create(
        name="DBA", responsibility=Responsibility.DATABASE, email="dba@example.com"
    )


def test_sweeper_fails_a_backup_whose_worker_died_and_removes_its_partial_file(
    source_database, dba_team
):
    backup = services.backup_request(database=source_database, trigger="scheduled")
    claimed = services.backup_claim(backup_id=backup.pk)
    storage = storage_for("")
    partial = storage.partial_path(claimed.file_name)
    partial.parent.mkdir(parents=True, exist_ok=True)
    partial.write_bytes(b"PGDMP half a dump")

    counts = services.backups_sweep(now=timezone.now() + dt.timedelta(minutes=3))

    backup.refresh_from_db()
    assert counts["failed"] == 1
    assert backup.status == BackupStatus.FAILED
    assert "worker running this backup stopped" in backup.message
    assert not partial.exists()
    assert Notification.objects.filter(
        responsibility=Responsibility.DATABASE, subject__contains="failed"
    ).exists()


def test_sweeper_reports_a_missed_scheduled_backup_once(source_database, dba_team):
    plan = services.backup_plan_ensure(database=source_database)
    later = plan.created_at + dt.timedelta(days=2)

    assert services.backups_sweep(now=later)["missed"] == 1
    assert services.backups_sweep(now=later)["missed"] == 0
    notification = Notification.objects.get(subject__contains="missed")
    assert notification.recipient == "dba@example.com"
    assert "did not start" in notification.body


def test_staleness_in_health_and_metrics(source_database, tmp_path):
    services.backup_plan_ensure(database=source_database)

    def backup_check():
        outcomes = checks.run_checks(timeout=10)
        return next(o for o in outcomes if o.name == "backup:orders-db")

    before = backup_check()
    assert before.status == "failing" and "no successful backup yet" in before.message
    assert before.critical

    backup = run(source_database)
    after = backup_check()
    assert after.status == "ok", after.message
    assert "newest backup 0.0 h old" in after.message

    Backup.objects.filter(pk=backup.pk).update(finished_at=timezone.now() - dt.timedelta(hours=27))
    stale = backup_check()
    assert stale.status == "failing" and "older than 26 h" in stale.message

    exposition = metrics.render().decode()
    assert 'opsportal_backup_last_success_timestamp_seconds{database="orders-db"}' in exposition
    assert (
        f'opsportal_backup_last_success_size_bytes{{database="orders-db"}} {backup.size_bytes}'
        in (exposition.replace(".0\n", "\n"))
    )
    services.drill_run(drill_id=services.drill_request(backup=backup).pk)
    exposition = metrics.render().decode()
    assert 'opsportal_backup_last_drill_success{database="orders-db"} 1.0' in exposition
    path = tmp_path / "metrics.txt"
    path.write_text(exposition)
    checked = subprocess.run(
        ["promtool", "check", "metrics"], stdin=path.open(), capture_output=True, text=True
    )
    problems = [
        line
        for line in (checked.stdout + checked.stderr).splitlines()
        if "opsportal_backup" in line
    ]
    assert problems == []


def test_backup_now_and_restore_backup_commands(source_database, second_database, capsys):
    call_command("backup_now", "orders-db", reason="before upgrade")
    backup = Backup.objects.get(trigger="cli")
    assert backup.status == BackupStatus.SUCCEEDED
    assert backup.sha256 in capsys.readouterr().out

    with pytest.raises(CommandError, match="Type the name of the system you restore into"):
        call_command(
            "restore_backup", str(backup.pk), target="orders-db-copy", confirm="x", reason="r"
        )
    call_command(
        "restore_backup",
        str(backup.pk),
        target="orders-db-copy",
        confirm=second_database.name,
        reason="reporting copy",
    )
    assert "Restored backup" in capsys.readouterr().out
    with pytest.raises(CommandError, match="No registered database is named 'nope'"):
        call_command("backup_now", "nope")


def test_only_database_admins_may_restore(client, source_database, second_database):
    """The runbook's restore is the Database admins' call: other roles get 403 and nothing
    is queued; a Database admin reaches the confirmation form."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from backups.models import Restore
    from opsportal.defaults import load_defaults

    load_defaults()
    backup = services.backup_run_now(database=source_database, reason="for the restore test")
    url = f"/admin/backups/backup/{backup.pk}/restore/"
    form = {
        "target": second_database.pk,
        "confirmation": second_database.name,
        "reason": "restore drill by hand",
    }
    users = get_user_model().objects
    for role in ("On-call engineers", "Viewers", "DevOps"):
        user = users.create_user(role.split()[0].lower(), password="role-pass-123", is_staff=True)
        user.groups.add(Group.objects.get(name=role))
        client.force_login(user)
        assert client.get(url).status_code == 403, role
        assert client.post(url, form).status_code == 403, role
    assert not Restore.objects.exists()

    dba = users.create_user("dora-dba", password="dba-pass-123", is_staff=True)
    dba.groups.add(Group.objects.get(name="Database admins"))
    client.force_login(dba)
    page = client.get(url)
    assert page.status_code == 200
    assert "confirmation" in page.content.decode()
