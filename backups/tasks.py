"""Celery tasks of the backups app: thin, each takes a primary key and calls one service."""

import contextlib
import os

from celery import shared_task

from backups import services
from opsportal.audit import context
from opsportal.audit.models import AuditSource

# How long to wait before trying again while another backup of the same database runs.
BUSY_RETRY_SECONDS = 30


@shared_task(name="backups.run", bind=True, acks_late=True)
def run_backup(self, backup_id: int) -> str:
    with context.acting(source=AuditSource.WORKER):
        try:
            backup = services.backup_run(
                backup_id=backup_id, worker=f"worker {self.request.hostname} (pid {os.getpid()})"
            )
        except services.BackupBusy:
            # The row stays queued; if this message is lost the sweeper dispatches it again.
            with contextlib.suppress(Exception):
                self.apply_async(args=[backup_id], countdown=BUSY_RETRY_SECONDS, retry=False)
            return "busy"
    return backup.status if backup else "not queued"


@shared_task(name="backups.restore", time_limit=3 * 3600 + 300, soft_time_limit=3 * 3600 + 240)
def run_restore(restore_id: int) -> str:
    with context.acting(source=AuditSource.WORKER):
        restore = services.restore_run(restore_id=restore_id)
    return restore.status if restore else "not queued"


@shared_task(name="backups.drill", time_limit=3 * 3600 + 300, soft_time_limit=3 * 3600 + 240)
def run_drill(drill_id: int) -> str:
    with context.acting(source=AuditSource.WORKER):
        drill = services.drill_run(drill_id=drill_id)
    return drill.status if drill else "not queued"


@shared_task(name="backups.run_scheduled", soft_time_limit=60, time_limit=90)
def run_scheduled_backup(plan_id: int) -> int | None:
    with context.acting(source=AuditSource.SCHEDULE):
        backup = services.backup_plan_run_scheduled(plan_id=plan_id)
    return backup.pk if backup else None


@shared_task(name="backups.drill_newest", soft_time_limit=60, time_limit=90)
def drill_newest_backups() -> int:
    with context.acting(source=AuditSource.SCHEDULE):
        return len(services.drills_request_newest())


@shared_task(name="backups.sweep", soft_time_limit=120, time_limit=150)
def sweep_backups() -> dict:
    with context.acting(source=AuditSource.SCHEDULE):
        return services.backups_sweep()


@shared_task(name="backups.fail_abandoned", soft_time_limit=30, time_limit=45)
def fail_abandoned_backups() -> int:
    with context.acting(source=AuditSource.SCHEDULE):
        return services.backups_fail_abandoned()


@shared_task(name="backups.configuration_backup", soft_time_limit=240, time_limit=300)
def configuration_backup() -> str:
    with context.acting(source=AuditSource.SCHEDULE):
        return services.configuration_backup().commit


@shared_task(name="backups.commit_configuration_changes", soft_time_limit=240, time_limit=300)
def commit_configuration_changes() -> str:
    with context.acting(source=AuditSource.WORKER):
        result = services.configuration_commit_changes()
    if result is None:
        return "nothing due"
    return result.commit if result.committed else "unchanged"
