"""Stored samples: appending a round's values and moving each series' newest value, dropping
series that stopped reporting, and folding old samples into rollups (retention)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from opsportal.monitoring.models import CollectionSchedule, LatestValue, Sample, SampleRollup

# (system id or None, metric, subject) -> (value, at)
SeriesValues = dict[tuple[int | None, str, str], tuple[float, dt.datetime]]


def samples_store(*, values: SeriesValues) -> int:
    """Append the samples and move each series' latest value forward."""
    if not values:
        return 0
    Sample.objects.bulk_create(
        [
            Sample(system_id=system_id, metric=metric, subject=subject, value=value, at=at)
            for (system_id, metric, subject), (value, at) in values.items()
        ],
        batch_size=2000,
    )
    LatestValue.objects.bulk_create(
        [
            LatestValue(
                key=LatestValue.key_for(system_id, metric, subject),
                system_id=system_id,
                metric=metric,
                subject=subject,
                value=value,
                at=at,
            )
            for (system_id, metric, subject), (value, at) in sorted(
                values.items(), key=lambda kv: (kv[0][0] or 0, kv[0][1], kv[0][2])
            )
        ],
        update_conflicts=True,
        unique_fields=["key"],
        update_fields=["value", "at"],
        batch_size=2000,
    )
    return len(values)


def series_prune_stale(*, now: dt.datetime | None = None) -> int:
    """Drop the newest value of every series not updated for MONITORING_STALE_SERIES_SECONDS
    (or three of its system's collection intervals, when that is longer): a removed
    container, an unmounted filesystem, a figure the system stopped reporting. /metrics and
    the overview read this table, so they stop showing a value that no longer exists; the
    samples themselves stay for their retention. (A deleted system's series go with it at
    once: the table's foreign key cascades in the same transaction.)"""
    now = now or timezone.now()
    age = settings.MONITORING_STALE_SERIES_SECONDS
    slow = dict(
        CollectionSchedule.objects.filter(interval_seconds__gt=age / 3).values_list(
            "system_id", "interval_seconds"
        )
    )
    pruned, _ = (
        LatestValue.objects.filter(at__lt=now - dt.timedelta(seconds=age))
        .exclude(system_id__in=list(slow))
        .delete()
    )
    for system_id, interval in slow.items():
        deleted, _ = LatestValue.objects.filter(
            system_id=system_id, at__lt=now - dt.timedelta(seconds=3 * interval)
        ).delete()
        pruned += deleted
    return pruned


# --- retention ---------------------------------------------------------------------------------


ROLLUP_SECONDS = 300


def samples_downsample(*, now: dt.datetime | None = None, chunk: dt.timedelta | None = None) -> int:
    """Fold raw samples older than the retention into 5-minute rollups, an hour at a time,
    and drop rollups past their own retention. Returns how many raw samples were folded."""
    now = now or timezone.now()
    chunk = chunk or dt.timedelta(hours=1)
    cutoff = now - dt.timedelta(days=settings.MONITORING_RAW_RETENTION_DAYS)
    folded = 0
    while True:
        oldest = Sample.objects.filter(at__lt=cutoff).order_by("at").values_list("at", flat=True)
        start = oldest.first()
        if start is None:
            break
        end = min(start + chunk, cutoff)
        buckets: dict[tuple, list[float]] = defaultdict(list)
        rows = Sample.objects.filter(at__gte=start, at__lt=end).values_list(
            "system_id", "metric", "subject", "at", "value"
        )
        for system_id, metric, subject, at, value in rows.iterator(chunk_size=5000):
            epoch = int(at.timestamp()) // ROLLUP_SECONDS * ROLLUP_SECONDS
            buckets[(system_id, metric, subject, epoch)].append(value)
        with transaction.atomic():
            SampleRollup.objects.bulk_create(
                [
                    SampleRollup(
                        system_id=system_id,
                        metric=metric,
                        subject=subject,
                        bucket=dt.datetime.fromtimestamp(epoch, tz=dt.UTC),
                        mean=sum(vals) / len(vals),
                        minimum=min(vals),
                        maximum=max(vals),
                        count=len(vals),
                    )
                    for (system_id, metric, subject, epoch), vals in buckets.items()
                ],
                batch_size=2000,
            )
            deleted, _ = Sample.objects.filter(at__gte=start, at__lt=end).delete()
        folded += deleted
    SampleRollup.objects.filter(
        bucket__lt=now - dt.timedelta(days=settings.MONITORING_ROLLUP_RETENTION_DAYS)
    ).delete()
    return folded
