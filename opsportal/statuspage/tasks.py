from celery import shared_task
from django.core.cache import cache

from opsportal.audit.context import acting
from opsportal.audit.models import AuditSource
from opsportal.statuspage import services


@shared_task(name="statuspage.refresh", time_limit=120, soft_time_limit=90)
def refresh() -> int:
    # Also on a schedule, so the page moves on (a new day's bar, a window's start) even when
    # no collection runs.
    # Cleared first: a change during this refresh queues the next one.
    cache.delete(services.REFRESH_QUEUED_KEY)
    with acting(source=AuditSource.SCHEDULE):
        return services.status_refresh().version
