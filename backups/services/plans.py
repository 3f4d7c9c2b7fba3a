"""Backup plans: the schedule as a django-celery-beat entry, the runbook's default plan for
every registered database, the scheduled run, and the app's default periodic tasks."""

from __future__ import annotations

import datetime as dt

from celery.schedules import crontab
from django.core.exceptions import ValidationError
from django.db import transaction
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from backups.models import Backup, BackupMethod, BackupPlan, BackupTrigger
from backups.services.runs import backup_request
from opsportal.systems.models import PostgresDatabase


def schedule_crontab(expression: str) -> dict[str, str]:
    """The plan's cron expression as django-celery-beat crontab fields (validated)."""
    parts = expression.split()
    if len(parts) != 5:
        raise ValidationError(
            "A schedule has five fields: minute hour day-of-month month day-of-week "
            f"(e.g. '0 2 * * *'); got {expression!r}."
        )
    minute, hour, day_of_month, month_of_year, day_of_week = parts
    fields = {
        "minute": minute,
        "hour": hour,
        "day_of_month": day_of_month,
        "month_of_year": month_of_year,
        "day_of_week": day_of_week,
    }
    try:
        crontab(**fields)
    except ValueError as exc:
        raise ValidationError(f"The schedule {expression!r} is not valid: {exc}") from exc
    return fields


def backup_plan_save(*, plan: BackupPlan) -> BackupPlan:
    """Save the plan and make its django-celery-beat entry follow it (audited by the
    model's change history)."""
    fields = schedule_crontab(plan.schedule)
    if plan.method == BackupMethod.CONTAINER and not plan.database.runs_in_container:
        raise ValidationError(
            f"{plan.database} has no Docker engine and container, so it cannot be dumped "
            "inside its container."
        )
    with transaction.atomic():
        plan.save()
        schedule, _ = CrontabSchedule.objects.get_or_create(timezone="UTC", **fields)
        task = plan.periodic_task or PeriodicTask.objects.filter(name=_task_name(plan)).first()
        if task is None:
            task = PeriodicTask(name=_task_name(plan), task="backups.run_scheduled")
        task.crontab = schedule
        task.interval = None
        task.args = f"[{plan.pk}]"
        task.enabled = plan.enabled
        task.description = f"Scheduled backup of {plan.database} (edit the backup plan)."
        task.save()
        if plan.periodic_task_id != task.pk:
            plan.periodic_task = task
            BackupPlan.objects.filter(pk=plan.pk).update(periodic_task=task)
    return plan


def _task_name(plan: BackupPlan) -> str:
    return f"Back up {plan.database.name}"


def backup_plan_ensure(*, database: PostgresDatabase) -> BackupPlan:
    """The database's plan, created with the runbook's defaults if it has none: dumped the
    way it was registered (docker exec inside its container when it runs in one, as the
    runbook's own commands do; pg_dump over the network otherwise)."""
    plan = BackupPlan.objects.filter(database=database).first()
    if plan is None:
        method = BackupMethod.CONTAINER if database.runs_in_container else BackupMethod.NETWORK
        plan = backup_plan_save(plan=BackupPlan(database=database, method=method))
    return plan


def backup_plan_on_registration(*, system: object, **kwargs: object) -> None:
    """Receiver of systems' `system_registered`: a newly registered database gets its
    default plan. After the registration commits, so that a configuration import, which
    brings the exported plans with it, creates a default only where the export had none."""
    if not isinstance(system, PostgresDatabase):
        return
    database_id = system.pk

    def ensure() -> None:
        database = PostgresDatabase.objects.select_related("docker_engine").filter(pk=database_id)
        if database.exists():
            backup_plan_ensure(database=database.get())

    transaction.on_commit(ensure, robust=True)


def plan_next_due(plan: BackupPlan, after: dt.datetime) -> dt.datetime:
    schedule = crontab(**schedule_crontab(plan.schedule))
    start, delta, _ = schedule.remaining_delta(after.astimezone(dt.UTC))
    return start + delta


def backup_plan_run_scheduled(*, plan_id: int) -> Backup | None:
    plan = BackupPlan.objects.select_related("database").filter(pk=plan_id, enabled=True).first()
    if plan is None:
        return None
    return backup_request(
        database=plan.database, trigger=BackupTrigger.SCHEDULED, reason="Scheduled backup"
    )


def backups_load_defaults() -> None:
    """Plans for registered databases, and the sweeper, drill and retention schedules."""
    from opsportal.schedules import periodic_task_ensure

    for database in PostgresDatabase.objects.filter(backup_plan__isnull=True):
        backup_plan_ensure(database=database)
    periodic_task_ensure(
        name="Sweep backups",
        task="backups.sweep",
        every_seconds=60,
        description="Re-dispatches lost backup work, fails runs whose worker died, reports "
        "missed scheduled backups.",
    )
    periodic_task_ensure(
        name="Fail backups whose worker died",
        task="backups.fail_abandoned",
        every_seconds=10,
        description="Fails running backups whose worker stopped beating, tells the database "
        "admins and re-runs a scheduled one once.",
    )
    periodic_task_ensure(
        name="Configuration backup",
        task="backups.configuration_backup",
        crontab={"minute": "15", "hour": "2"},
        description="Commits the portal's configuration to its Git repository (daily).",
    )
    periodic_task_ensure(
        name="Weekly restore drill",
        task="backups.drill_newest",
        crontab={"minute": "0", "hour": "4", "day_of_week": "0"},
        description="Restores the newest backup of every plan into a scratch database and "
        "compares row counts.",
    )
