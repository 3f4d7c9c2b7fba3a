from celery import shared_task

from opsportal.audit import context
from opsportal.audit.models import AuditSource
from opsportal.audit.services import audit_checkpoint_write


@shared_task(name="audit.write_checkpoint", soft_time_limit=240, time_limit=300)
def write_checkpoint() -> str:
    with context.acting(source=AuditSource.SCHEDULE):
        checkpoint, where = audit_checkpoint_write()
    return f"record #{checkpoint.last_id}: {where}"
