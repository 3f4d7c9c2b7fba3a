"""Operations with a real worker and a real broker: a worker killed mid-operation, and a
broker that is down when the operation is requested."""

import datetime as dt
import time

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model

from incidents.models import Incident, TimelineKind
from opsportal.operations.models import Operation, OperationStatus
from opsportal.operations.services import operation_request, operations_sweep
from opsportal.systems.models import RedisCache
from tests.workers import (
    RedisBroker,
    celery_worker,
    clear_queue,
    kill_worker,
    run_in_portal_process,
)


def wait_for_status(pk, statuses, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        operation = Operation.objects.get(pk=pk)
        if operation.status in statuses:
            return operation
        time.sleep(0.1)
    raise AssertionError(f"operation {pk} stayed {Operation.objects.get(pk=pk).status}")


def wait_for_timeline_event(incident, text, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        event = incident.timeline.filter(kind=TimelineKind.OPERATION).last()
        if event is not None and text in event.message:
            return event
        time.sleep(0.1)
    return None


@pytest.fixture
def requester(transactional_db):
    return get_user_model().objects.create_user("rita", "rita@example.com", "pw-rita-123!")


def test_a_worker_killed_mid_operation_is_failed_by_the_sweeper(
    transactional_db, http_endpoint, http_server, requester
):
    clear_queue(settings.CELERY_BROKER_URL)
    incident = Incident.objects.create(title="slow", detected_at=time_now())
    incident.affected_systems.add(http_endpoint)
    http_server.behaviour.delay_seconds = 1.0
    with celery_worker() as worker:
        operation = operation_request(
            kind="api_probe",
            target=http_endpoint,
            params={"count": 60},
            actor=requester,
            incident=incident,
        )
        running = wait_for_status(operation.pk, {OperationStatus.RUNNING})
        kill_worker(worker)
    running.refresh_from_db()
    assert running.status == OperationStatus.RUNNING  # nobody is left to finish it
    # Before its time limit has passed the sweeper leaves it alone ...
    assert operations_sweep()["orphaned"] == 0
    # ... after it (plus grace), the row is failed with the reason.
    later = running.started_at + dt.timedelta(seconds=running.time_limit_seconds + 31)
    assert operations_sweep(now=later)["orphaned"] == 1
    running.refresh_from_db()
    assert running.status == OperationStatus.FAILED
    assert "The worker running it stopped answering" in running.error
    event = incident.timeline.filter(kind=TimelineKind.OPERATION).last()
    assert "failed: The worker running it stopped answering" in event.message


def time_now():
    from django.utils import timezone

    return timezone.now()


def test_requested_while_the_broker_is_down_runs_once_it_is_back(
    transactional_db, redis_url, requester
):
    cache = RedisCache.objects.create(name="cache", port=int(redis_url.rsplit(":", 1)[1]), db=7)
    broker = RedisBroker()  # not started: the broker is down
    try:
        out = run_in_portal_process(
            "from django.contrib.auth import get_user_model\n"
            "from opsportal.systems.models import RedisCache\n"
            "from opsportal.operations.services import operation_request\n"
            f"target = RedisCache.objects.get(pk={cache.pk})\n"
            f"actor = get_user_model().objects.get(pk={requester.pk})\n"
            "op = operation_request(kind='cache_statistics', target=target, params={},"
            " actor=actor, reason='drill')\n"
            "print('requested', op.pk)",
            broker_url=broker.url,
        )
        assert "requested" in out
        operation = Operation.objects.get()
        assert operation.status == OperationStatus.QUEUED  # the request itself succeeded
        broker.start()
        with celery_worker(broker_url=broker.url):
            time.sleep(1)
            assert Operation.objects.get().status == OperationStatus.QUEUED  # the message was lost
            run_in_portal_process(
                "import datetime as dt\nfrom django.utils import timezone\n"
                "from opsportal.operations.services import operations_sweep\n"
                "print(operations_sweep(now=timezone.now() + dt.timedelta(seconds=31)))",
                broker_url=broker.url,
            )
            done = wait_for_status(
                operation.pk, {OperationStatus.SUCCEEDED, OperationStatus.FAILED}
            )
        assert done.status == OperationStatus.SUCCEEDED, done.error
        assert done.dispatch_count == 2 and "hit rate" in done.output
    finally:
        broker.cleanup()


def test_an_operation_overrunning_its_time_limit_ends_failed_saying_it_timed_out(
    transactional_db, postgres_target, target_database_dsn, requester, monkeypatch
):
    """Database statistics blocked behind a table lock held by a pg_sleep far longer than
    the 2 s limit set here: the worker's soft time limit stops it and the row says so."""
    import contextlib
    import dataclasses
    import threading

    import psycopg

    from opsportal.operations.kinds import KINDS

    monkeypatch.setitem(
        KINDS, "db_statistics", dataclasses.replace(KINDS["db_statistics"], time_limit_seconds=2)
    )
    clear_queue(settings.CELERY_BROKER_URL)
    incident = Incident.objects.create(title="db slow", detected_at=time_now())
    incident.affected_systems.add(postgres_target)
    table = f"locked_{requester.pk}_{int(time.time())}"
    with psycopg.connect(target_database_dsn, autocommit=True) as admin:
        admin.execute(f"CREATE TABLE {table} (x int)")
    locker = psycopg.connect(target_database_dsn)
    locker_pid = locker.info.backend_pid
    locked = threading.Event()

    def hold_the_lock():
        # pg_total_relation_size() over pg_stat_user_tables needs this table's lock. The
        # session is terminated below once the test has its answer.
        with contextlib.suppress(psycopg.Error), locker.transaction():
            locker.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
            locked.set()
            locker.execute("SELECT pg_sleep(60)")

    thread = threading.Thread(target=hold_the_lock, daemon=True)
    thread.start()
    try:
        assert locked.wait(10)
        with celery_worker(pool="prefork"):
            operation = operation_request(
                kind="db_statistics",
                target=postgres_target,
                params={},
                actor=requester,
                incident=incident,
            )
            assert operation.time_limit_seconds == 2
            started = time.monotonic()
            done = wait_for_status(
                operation.pk, {OperationStatus.SUCCEEDED, OperationStatus.FAILED}, timeout=40
            )
            took = time.monotonic() - started
            # The worker writes the timeline entry just after it stores the failed status:
            # wait for it before the worker is stopped.
            event = wait_for_timeline_event(incident, "failed: Timed out")
        assert done.status == OperationStatus.FAILED, done.output
        assert done.error.startswith("Timed out: stopped after its time limit of 2 s"), done.error
        assert done.finished_at is not None
        # Ended by the soft limit, not by waiting out the pg_sleep or the 15 s statement timeout.
        assert took < 14, took
        assert event is not None, list(incident.timeline.values_list("message", flat=True))
        # Nothing is left running for the sweeper to find later.
        assert not Operation.objects.filter(status=OperationStatus.RUNNING).exists()
    finally:
        with psycopg.connect(target_database_dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", [locker_pid])
            thread.join(10)
            admin.execute(f"DROP TABLE IF EXISTS {table}")
        locker.close()
