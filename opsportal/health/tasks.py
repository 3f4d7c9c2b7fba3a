from celery import shared_task

from opsportal.health.services import heartbeat_record, status_report_refresh


@shared_task(name="health.beat_heartbeat", soft_time_limit=20, time_limit=30)
def beat_heartbeat() -> None:
    heartbeat_record(name="beat")


# Bounded by HEALTH_CHECK_TIMEOUT inside; the limits only guard against a wedged thread pool.
@shared_task(name="health.refresh_status", soft_time_limit=60, time_limit=90)
def refresh_status() -> bool:
    return status_report_refresh().ok
