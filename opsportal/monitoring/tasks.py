import datetime as dt

from celery import shared_task

from opsportal.audit.context import acting
from opsportal.audit.models import AuditSource
from opsportal.monitoring import services


@shared_task(name="monitoring.collect", time_limit=60, soft_time_limit=45)
def collect() -> int:
    """Beat's tick: lease the due systems and send their collections to the collect queue."""
    with acting(source=AuditSource.SCHEDULE):
        return len(services.collection_dispatch_due().leased)


# The hard limit stays within the lease (LEASE_SECONDS): a collection cut off by it leaves a
# lease that lapses, never one that outlives the collection it guards.
@shared_task(name="monitoring.collect_systems", time_limit=110, soft_time_limit=100)
def collect_systems(system_ids: list[int], leased_at: str) -> int:
    """One share of a round: the systems this share's lease names (usually one)."""
    with acting(source=AuditSource.SCHEDULE):
        return len(
            services.collection_run_leased(
                system_ids=system_ids, leased_at=dt.datetime.fromisoformat(leased_at)
            ).collected
        )


@shared_task(name="monitoring.downsample", time_limit=3600, soft_time_limit=3300)
def downsample() -> int:
    with acting(source=AuditSource.SCHEDULE):
        # Also here, so stale figures leave /metrics even when no collection runs at all.
        services.series_prune_stale()
        return services.samples_downsample()


@shared_task(name="monitoring.prepare_sample_partitions", time_limit=300, soft_time_limit=240)
def prepare_sample_partitions() -> int:
    return len(services.sample_partitions_prepare())
