from celery import shared_task

from opsportal.approvals.services import approvals_expire
from opsportal.audit import context
from opsportal.audit.models import AuditSource


@shared_task(name="approvals.sweep", soft_time_limit=60, time_limit=90)
def sweep_approvals() -> int:
    with context.acting(source=AuditSource.SCHEDULE):
        return approvals_expire()
