"""Escalation's background work: thin tasks that load rows by primary key and call one
service (the rows, not the messages, say what is due)."""

from celery import shared_task

from opsportal.audit import context
from opsportal.audit.models import AuditSource


@shared_task(name="incidents.send_escalation_page", soft_time_limit=60, time_limit=90)
def send_escalation_page(page_id: int) -> bool:
    from incidents.services.escalation import escalation_page_send

    with context.acting(source=AuditSource.WORKER):
        return escalation_page_send(page_id=page_id) is not None


@shared_task(name="incidents.sweep_escalations", soft_time_limit=120, time_limit=180)
def sweep_escalations() -> dict[str, int]:
    from incidents.services.escalation import escalations_sweep

    with context.acting(source=AuditSource.SCHEDULE):
        return escalations_sweep()
