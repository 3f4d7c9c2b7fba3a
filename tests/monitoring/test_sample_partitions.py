"""Raw samples stored by day on PostgreSQL (opsportal/monitoring/partitions.py and the
sample services): the table is partitioned, the beat's task prepares the coming days, a
sample for a day without its partition is kept and moved in later, retention drops whole
old days and keeps the recent ones, a round is one COPY, and charts read across days."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from opsportal.monitoring import partitions, services, tasks
from opsportal.monitoring.models import LatestValue, Sample, SampleRollup
from opsportal.monitoring.selectors import system_figures

pytestmark = pytest.mark.django_db


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)


def _today() -> dt.date:
    return timezone.now().astimezone(dt.UTC).date()


def _partition_of(**filters) -> set[str]:
    """The partitions holding the samples that match (by PostgreSQL's tableoid)."""
    ids = list(Sample.objects.filter(**filters).values_list("pk", flat=True))
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT DISTINCT tableoid::regclass::text FROM monitoring_sample WHERE id = ANY(%s)",
            [ids],
        )
        return {row[0] for row in cursor.fetchall()}


def _day_partitions() -> dict[dt.date, str]:
    with connection.cursor() as cursor:
        return partitions.partition_days(cursor)


def test_sample_table_is_partitioned_by_day_with_a_default_partition():
    services.sample_partitions_prepare()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT p.partstrat, a.attname FROM pg_partitioned_table p "
            "JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0] "
            "WHERE p.partrelid = 'monitoring_sample'::regclass"
        )
        assert cursor.fetchall() == [("r", "at")]  # by range of the sample's time
        cursor.execute(
            "SELECT pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE c.relname = %s",
            [partitions.DEFAULT],
        )
        assert cursor.fetchall() == [("DEFAULT",)]
        cursor.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = 'monitoring_sample'::regclass AND contype IN ('p', 'f') "
            "ORDER BY contype DESC"
        )
        key, foreign_key = [row[0] for row in cursor.fetchall()]
    assert key == "PRIMARY KEY (id, at)"
    assert "REFERENCES systems_system(id)" in foreign_key
    days = _day_partitions()
    for ahead in range(partitions.DAYS_AHEAD + 1):
        assert _today() + dt.timedelta(days=ahead) in days


def test_the_beat_task_creates_the_coming_days_partitions():
    services.sample_partitions_prepare()
    last = _today() + dt.timedelta(days=partitions.DAYS_AHEAD)
    with connection.cursor() as cursor:  # as if the beat had not run for a day
        partitions.partition_drop(cursor, partitions.partition_name(last))
    assert last not in _day_partitions()

    assert tasks.prepare_sample_partitions.apply().get() == 1
    assert last in _day_partitions()
    assert tasks.prepare_sample_partitions.apply().get() == 0  # nothing left to create


def test_a_sample_for_a_day_without_partition_is_kept_then_moved_into_its_day(http_endpoint):
    far = timezone.now() + dt.timedelta(days=40)
    assert far.date() not in _day_partitions()
    key = (http_endpoint.pk, "http_latency_ms", "")
    services.samples_store(values={key: (42.0, far)})
    assert _partition_of(system_id=http_endpoint.pk) == {partitions.DEFAULT}

    created = services.sample_partitions_prepare()
    assert far.astimezone(dt.UTC).date() in created
    assert _partition_of(system_id=http_endpoint.pk) == {partitions.partition_name(far.date())}
    (sample,) = Sample.objects.filter(system_id=http_endpoint.pk)
    assert (sample.value, sample.at) == (42.0, far)
    with connection.cursor() as cursor:
        assert partitions.default_days(cursor) == set()


def test_retention_drops_whole_old_days_and_keeps_recent_samples(http_endpoint, settings):
    settings.MONITORING_RAW_RETENTION_DAYS = 7
    today = _today()
    now = _midnight(today) + dt.timedelta(hours=12)
    old_day = today - dt.timedelta(days=9)
    # Older than the retention's cutoff (now - 7 days, at noon) but its day is not over by
    # then: kept until the whole day is past.
    edge_day = today - dt.timedelta(days=7)
    key = (http_endpoint.pk, "http_latency_ms", "")
    for i in range(10):  # ten samples in one 5-minute bucket of the old day
        at = _midnight(old_day) + dt.timedelta(hours=6, seconds=30 * i)
        services.samples_store(values={key: (i * 10.0, at)})
    services.samples_store(values={key: (1.0, _midnight(edge_day) + dt.timedelta(hours=6))})
    services.samples_store(values={key: (2.0, now)})
    services.sample_partitions_prepare(now=now)
    old_partition = partitions.partition_name(old_day)
    assert old_day in _day_partitions() and edge_day in _day_partitions()

    with CaptureQueriesContext(connection) as ctx:
        folded = services.samples_downsample(now=now)

    assert folded == 10
    assert old_day not in _day_partitions()
    statements = [q["sql"] for q in ctx.captured_queries]
    assert f"DROP TABLE {old_partition}" in statements
    assert not [s for s in statements if s.startswith("DELETE") and old_partition in s]
    kept = sorted(Sample.objects.filter(system_id=http_endpoint.pk).values_list("value", flat=True))
    assert kept == [1.0, 2.0]
    (rollup,) = SampleRollup.objects.filter(system_id=http_endpoint.pk)
    assert (rollup.count, rollup.minimum, rollup.maximum, rollup.mean) == (10, 0, 90, 45)
    assert rollup.bucket == _midnight(old_day) + dt.timedelta(hours=6)


def test_a_round_is_written_with_one_copy(http_endpoint):
    at = timezone.now()
    values = {
        (http_endpoint.pk, "container_cpu_percent", f"container-{i}"): (float(i), at)
        for i in range(10_000)
    }
    with CaptureQueriesContext(connection) as ctx:
        assert services.samples_store(values=values) == 10_000

    sample_statements = [q["sql"] for q in ctx.captured_queries if "monitoring_sample" in q["sql"]]
    assert sample_statements == [
        "COPY monitoring_sample (at, system_id, metric, subject, value) FROM STDIN"
    ]
    assert Sample.objects.filter(system_id=http_endpoint.pk).count() == 10_000
    assert LatestValue.objects.filter(system_id=http_endpoint.pk).count() == 10_000
    # The newest values move forward with one statement per round, the portal's own series
    # (no system) included; each series keeps one row.
    later = at + dt.timedelta(seconds=30)
    moved = {key: (value + 0.5, later) for key, (value, _) in values.items()}
    moved[(None, "container_cpu_percent", "portal")] = (7.0, later)
    # Derived figures can be ints beside floats (a restart count): one float array.
    moved[(http_endpoint.pk, "container_cpu_percent", "container-8")] = (3, later)
    with CaptureQueriesContext(connection) as ctx:
        assert services.samples_store(values=moved) == 10_001
    latest_statements = [q for q in ctx.captured_queries if "monitoring_latestvalue" in q["sql"]]
    assert len(latest_statements) == 1
    with connection.cursor() as cursor:  # room on each page: the rewrite is a HOT update
        cursor.execute("SELECT reloptions FROM pg_class WHERE relname = 'monitoring_latestvalue'")
        assert cursor.fetchone()[0] == ["fillfactor=50"]
    assert LatestValue.objects.filter(system_id=http_endpoint.pk).count() == 10_000
    newest = LatestValue.objects.get(
        key=LatestValue.key_for(http_endpoint.pk, "container_cpu_percent", "container-7")
    )
    assert (newest.value, newest.at) == (7.5, later)
    counted = LatestValue.objects.get(subject="container-8", system_id=http_endpoint.pk)
    assert counted.value == 3.0
    portal = LatestValue.objects.get(system=None, subject="portal")
    assert (portal.value, portal.at, portal.key) == (7.0, later, "0|container_cpu_percent|portal")


def test_charts_read_across_the_days_partitions(http_endpoint):
    yesterday = _today() - dt.timedelta(days=1)
    now = _midnight(yesterday + dt.timedelta(days=1)) + dt.timedelta(minutes=20)
    metric = "http_latency_p95_ms"
    for minutes, value in ((-50, 10.0), (-10, 20.0), (10, 30.0)):
        at = _midnight(yesterday + dt.timedelta(days=1)) + dt.timedelta(minutes=minutes)
        services.samples_store(values={(http_endpoint.pk, metric, ""): (value, at)})
    services.sample_partitions_prepare(now=now - dt.timedelta(days=1))
    assert len(_partition_of(system_id=http_endpoint.pk)) == 2

    figures = {f.metric: f for f in system_figures(system=http_endpoint, now=now)}
    assert figures[metric].values == [20.0, 30.0]  # the last hour, two days


def test_converting_the_table_keeps_every_sample_and_its_id(http_endpoint):
    key = (http_endpoint.pk, "http_latency_ms", "")
    now = timezone.now()
    for days in (0, 2, 30):  # today, a prepared day, a day in the default partition
        services.samples_store(values={key: (float(days), now - dt.timedelta(days=days))})
    before = sorted(Sample.objects.values_list("pk", "at", "value"))
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # no pending checks before ALTER
        partitions.convert_to_plain(cursor)
        assert not partitions.is_partitioned(cursor)
        assert sorted(Sample.objects.values_list("pk", "at", "value")) == before

        partitions.convert_to_partitioned(cursor, today=_today(), days_ahead=2)
        assert partitions.is_partitioned(cursor)
        assert sorted(Sample.objects.values_list("pk", "at", "value")) == before
        assert set(partitions.partition_days(cursor)) >= {
            (now - dt.timedelta(days=d)).astimezone(dt.UTC).date() for d in (0, 2, 30)
        }
    services.samples_store(values={key: (99.0, now)})  # the id sequence carries on
    assert Sample.objects.get(value=99.0).pk > max(pk for pk, _at, _v in before)


@pytest.mark.django_db(transaction=True)  # the other session must see the day's partition
def test_dropping_a_day_waits_its_turn_without_blocking_the_collectors(http_endpoint, settings):
    """A long read holds the table: the drop's lock wait gives up after a moment (so inserts
    do not queue behind it) and tries again, and the day goes once the read ends."""
    import threading
    import time

    import psycopg

    settings.MONITORING_RAW_RETENTION_DAYS = 7
    now = _midnight(_today()) + dt.timedelta(hours=12)
    old_day = _today() - dt.timedelta(days=9)
    key = (http_endpoint.pk, "http_latency_ms", "")
    services.samples_store(values={key: (1.0, _midnight(old_day) + dt.timedelta(hours=1))})
    services.sample_partitions_prepare(now=now)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    dsn = connection.get_connection_params()
    dsn.pop("cursor_factory", None)
    dsn.pop("context", None)
    waits_seen = []

    def until(watcher, want: bool) -> None:
        deadline = time.monotonic() + 30
        query = "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = %s AND NOT granted)"
        while watcher.execute(query, [pid]).fetchone()[0] != want:
            if time.monotonic() > deadline:
                return
            time.sleep(0.01)  # polling pg_locks for the other session's wait

    def long_read() -> None:
        with psycopg.connect(**dsn, autocommit=True) as watcher, psycopg.connect(**dsn) as reader:
            reader.execute("SET lock_timeout = '10s'")
            reader.execute("LOCK TABLE monitoring_sample IN ACCESS SHARE MODE")
            ready.set()
            until(watcher, True)  # the drop waits for the lock ...
            waits_seen.append(1)
            until(watcher, False)  # ... gives up after its lock timeout ...
            until(watcher, True)  # ... and tries again
            waits_seen.append(2)
            reader.rollback()  # the read ends; the second wait gets the lock

    ready = threading.Event()
    thread = threading.Thread(target=long_read)
    thread.start()
    assert ready.wait(15)
    try:
        assert services.samples_downsample(now=now) == 1
    finally:
        thread.join(30)
    assert len(waits_seen) == 2
    assert old_day not in _day_partitions()
