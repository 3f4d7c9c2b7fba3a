from celery import shared_task

from opsportal.audit import context
from opsportal.audit.models import AuditSource
from opsportal.systems.services import systems_check_due


@shared_task(name="systems.check_due", soft_time_limit=60, time_limit=90)
def check_due_systems() -> int:
    with context.acting(source=AuditSource.SCHEDULE):
        return systems_check_due()
