"""Stored samples: appending a round's values and moving each series' newest value, dropping
series that stopped reporting, and folding old samples into rollups (retention).

On PostgreSQL the raw samples are partitioned by day (opsportal/monitoring/partitions.py):
a round is written with one COPY, the beat prepares the coming days' partitions, and
retention folds and drops whole days. SQLite (`make run`) keeps one plain table, written
with bulk INSERTs and trimmed with DELETE."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.utils import timezone

from opsportal.monitoring import partitions, selectors
from opsportal.monitoring.models import CollectionSchedule, LatestValue, Sample, SampleRollup

# (system id or None, metric, subject) -> (value, at)
SeriesValues = dict[tuple[int | None, str, str], tuple[float, dt.datetime]]


def samples_store(*, values: SeriesValues) -> int:
    """Append the samples and move each series' latest value forward."""
    if not values:
        return 0
    if connection.vendor == "postgresql":
        # One COPY for the whole round, routed by PostgreSQL to each day's partition.
        with connection.cursor() as cursor:
            statement = "COPY monitoring_sample (at, system_id, metric, subject, value) FROM STDIN"
            with cursor.copy(statement) as copy:
                for (system_id, metric, subject), (value, at) in values.items():
                    copy.write_row((at, system_id, metric, subject, value))
    else:
        Sample.objects.bulk_create(
            [
                Sample(system_id=system_id, metric=metric, subject=subject, value=value, at=at)
                for (system_id, metric, subject), (value, at) in values.items()
            ]
        )
    if connection.vendor == "postgresql":
        _latest_values_upsert(values)
    else:
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
    if any(system_id is not None for system_id, _metric, _subject in values):
        # Once the samples are visible to the pages, the overview's sparklines read before
        # are out of date (the portal's own figures are not on them).
        transaction.on_commit(selectors.overview_series_outdate)
    return len(values)


def _latest_values_upsert(values: SeriesValues) -> None:
    """Every series' newest value in one statement: the round travels as six arrays and
    `unnest` turns them into rows (10,000 model objects and five 12,000-parameter INSERTs
    cost ~600 ms of a round). Rows are written in (system, metric, subject) order with code-point
    comparison, the order the bulk INSERTs used, so two collectors' rounds (of this or the
    previous version, during a rolling deploy) lock shared rows in the same order."""
    columns: tuple[list, ...] = ([], [], [], [], [], [])
    keys, system_ids, metrics, subjects, numbers, times = columns
    for (system_id, metric, subject), (value, at) in values.items():
        keys.append(LatestValue.key_for(system_id, metric, subject))
        system_ids.append(system_id)
        metrics.append(metric)
        subjects.append(subject)
        numbers.append(float(value))  # a round may mix ints and floats; one array type
        times.append(at)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO monitoring_latestvalue (key, system_id, metric, subject, value, at) "
            "SELECT * FROM unnest(%s::varchar[], %s::bigint[], %s::varchar[], %s::varchar[],"
            " %s::double precision[], %s::timestamptz[])"
            " AS round (key, system_id, metric, subject, value, at)"
            ' ORDER BY coalesce(system_id, 0), metric COLLATE "C", subject COLLATE "C"'
            " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, at = EXCLUDED.at",
            list(columns),
        )


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


def sample_partitions_prepare(*, now: dt.datetime | None = None) -> list[dt.date]:
    """Create the raw sample partitions of today and the next DAYS_AHEAD days (UTC), and of
    any day whose samples wait in the default partition, moving them in. Run by the beat
    every hour; a no-op on SQLite. Returns the days created."""
    if connection.vendor != "postgresql":
        return []
    today = (now or timezone.now()).astimezone(dt.UTC).date()
    with connection.cursor() as cursor:
        existing = partitions.partition_days(cursor)
        wanted = {today + dt.timedelta(days=i) for i in range(partitions.DAYS_AHEAD + 1)}
        wanted |= partitions.default_days(cursor)
    created = sorted(wanted - set(existing))
    for day in created:
        with transaction.atomic(), connection.cursor() as cursor:
            partitions.partition_create(cursor, day)
    return created


def samples_downsample(*, now: dt.datetime | None = None, chunk: dt.timedelta | None = None) -> int:
    """Fold raw samples older than the retention into 5-minute rollups and drop them, then
    drop rollups past their own retention. Returns how many raw samples were folded.

    PostgreSQL: each day partition whose whole day is older than the retention is folded in
    one statement and dropped (so raw samples stay between the retention and one day more);
    the default partition's old strays, if any, are folded and deleted. SQLite: folded an
    hour (`chunk`) at a time and deleted."""
    now = now or timezone.now()
    cutoff = now - dt.timedelta(days=settings.MONITORING_RAW_RETENTION_DAYS)
    if connection.vendor == "postgresql":
        folded = _downsample_partitions(cutoff)
    else:
        folded = _downsample_rows(cutoff, chunk or dt.timedelta(hours=1))
    SampleRollup.objects.filter(
        bucket__lt=now - dt.timedelta(days=settings.MONITORING_ROLLUP_RETENTION_DAYS)
    ).delete()
    return folded


def _downsample_partitions(cutoff: dt.datetime) -> int:
    folded = 0
    with connection.cursor() as cursor:
        days = partitions.partition_days(cursor)
    for day, name in sorted(days.items()):
        if dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC) > cutoff:
            continue
        # Fold and drop in one transaction: a failure leaves the day whole, to fold again.
        with transaction.atomic(), connection.cursor() as cursor:
            day_folded = partitions.partition_fold(cursor, name, rollup_seconds=ROLLUP_SECONDS)
            _partition_drop_when_free(cursor, name)
        folded += day_folded
    with transaction.atomic(), connection.cursor() as cursor:
        folded += partitions.default_fold_and_delete(
            cursor, before=cutoff, rollup_seconds=ROLLUP_SECONDS
        )
    return folded


DROP_LOCK_TIMEOUT_MS = 2000
DROP_ATTEMPTS = 30


def _partition_drop_when_free(cursor, name: str) -> None:
    """Drop the day's partition, trying for the table's lock a little at a time: a long read
    of the samples (a report over weeks) delays the drop, not the collectors' inserts that
    would otherwise queue behind the waiting lock."""
    for attempt in range(DROP_ATTEMPTS):
        try:
            with transaction.atomic():  # a savepoint: a timed-out wait keeps the fold
                partitions.partition_drop(cursor, name, lock_timeout_ms=DROP_LOCK_TIMEOUT_MS)
            return
        except OperationalError as error:
            waited = getattr(error.__cause__, "sqlstate", None) == "55P03"  # lock_not_available
            if not waited or attempt == DROP_ATTEMPTS - 1:
                raise


def _downsample_rows(cutoff: dt.datetime, chunk: dt.timedelta) -> int:
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
    return folded
