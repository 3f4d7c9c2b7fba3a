from celery import shared_task

from opsportal.health.services import heartbeat_record


@shared_task(name="health.beat_heartbeat", soft_time_limit=20, time_limit=30)
def beat_heartbeat() -> None:
    heartbeat_record(name="beat")
