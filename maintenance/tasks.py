"""Thin Celery tasks: take a primary key, call one service."""

from celery import shared_task

from maintenance import services
from opsportal.audit import context
from opsportal.audit.models import AuditSource


@shared_task(name="maintenance.run_step", soft_time_limit=100, time_limit=120)
def run_step(step_id: int) -> None:
    with context.acting(source=AuditSource.WORKER):
        services.step_run(step_id=step_id)


@shared_task(name="maintenance.check_backups", soft_time_limit=50, time_limit=60)
def check_backups(step_id: int) -> None:
    with context.acting(source=AuditSource.WORKER):
        services.step_check_backups(step_id=step_id)


@shared_task(name="maintenance.run_security_scan", soft_time_limit=540, time_limit=600)
def run_security_scan(occurrence_id: int) -> None:
    with context.acting(source=AuditSource.WORKER):
        services.security_scan_run(occurrence_id=occurrence_id)


@shared_task(name="maintenance.tick", soft_time_limit=50, time_limit=60)
def tick() -> dict:
    with context.acting(source=AuditSource.SCHEDULE):
        return services.maintenance_tick()


@shared_task(name="maintenance.generate", soft_time_limit=240, time_limit=300)
def generate() -> dict:
    with context.acting(source=AuditSource.SCHEDULE):
        return {"windows": services.plans_generate(), "occurrences": services.tasks_generate()}
