from celery import shared_task

from opsportal.audit import context
from opsportal.audit.models import AuditSource
from opsportal.people.services import notification_deliver, notifications_sweep


@shared_task(name="people.deliver_notification", soft_time_limit=60, time_limit=90)
def deliver_notification(notification_id: int) -> None:
    with context.acting(source=AuditSource.WORKER):
        notification_deliver(notification_id=notification_id)


@shared_task(name="people.sweep_notifications", soft_time_limit=240, time_limit=300)
def sweep_notifications() -> int:
    with context.acting(source=AuditSource.SCHEDULE):
        return notifications_sweep()
