from celery import shared_task

from opsportal.audit.context import acting
from opsportal.audit.models import AuditSource
from opsportal.monitoring import services


@shared_task(name="monitoring.collect", time_limit=150, soft_time_limit=120)
def collect() -> int:
    with acting(source=AuditSource.SCHEDULE):
        return len(services.collection_run_due().collected)


@shared_task(name="monitoring.downsample", time_limit=3600, soft_time_limit=3300)
def downsample() -> int:
    with acting(source=AuditSource.SCHEDULE):
        # Also here, so stale figures leave /metrics even when no collection runs at all.
        services.series_prune_stale()
        return services.samples_downsample()


@shared_task(name="monitoring.prepare_sample_partitions", time_limit=300, soft_time_limit=240)
def prepare_sample_partitions() -> int:
    return len(services.sample_partitions_prepare())
