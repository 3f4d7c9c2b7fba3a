from celery import shared_task

from opsportal.audit import context
from opsportal.audit.models import AuditSource
from opsportal.operations.services import operation_execute, operations_sweep


@shared_task(name="operations.execute", acks_late=True)
def execute_operation(operation_id: int) -> str | None:
    with context.acting(source=AuditSource.WORKER):
        operation = operation_execute(operation_id=operation_id)
    return operation.status if operation else None


@shared_task(name="operations.sweep", soft_time_limit=60, time_limit=90)
def sweep_operations() -> dict:
    with context.acting(source=AuditSource.SCHEDULE):
        return operations_sweep()
