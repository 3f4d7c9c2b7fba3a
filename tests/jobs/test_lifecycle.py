"""The shared job lifecycle (opsportal/jobs) on a real job model: the claim is a
compare-and-set, the heartbeat and finish respect who got there first, and the sweep
re-dispatches lost rows and fails dead ones through the kind's own functions."""

import datetime as dt

import pytest
from django.db.models import Q
from django.utils import timezone

from opsportal.jobs import (
    JobSpec,
    job_claim,
    job_finish,
    job_heartbeat,
    job_sweep,
)
from opsportal.operations.models import Operation, OperationStatus
from opsportal.systems.models import HttpEndpoint

QUEUED, RUNNING = OperationStatus.QUEUED, OperationStatus.RUNNING


@pytest.fixture
def operation(db):
    # The test is about the lifecycle on the model itself, so the row is written directly
    # (no broker, no dispatch).
    target = HttpEndpoint.objects.create(name="jobs-api", url="http://127.0.0.1:9/health")
    return Operation.objects.create(
        kind="api_probe",
        target=target,
        time_limit_seconds=60,
        dispatch_count=1,
        last_dispatched_at=timezone.now(),
    )


def test_the_claim_moves_the_row_once(operation):
    now = timezone.now()
    assert job_claim(Operation, operation.pk, from_status=QUEUED, to_status=RUNNING, started_at=now)
    # A redelivered message (or a second worker) finds the row taken.
    assert not job_claim(Operation, operation.pk, from_status=QUEUED, to_status=RUNNING)
    operation.refresh_from_db()
    assert (operation.status, operation.started_at) == (RUNNING, now)


def test_the_claim_accepts_several_statuses_and_a_condition(operation):
    later = timezone.now() + dt.timedelta(minutes=1)
    assert not job_claim(
        Operation,
        operation.pk,
        from_status=[QUEUED, RUNNING],
        to_status=RUNNING,
        when=Q(last_dispatched_at__gt=later),
    )
    assert job_claim(
        Operation,
        operation.pk,
        from_status=[QUEUED, RUNNING],
        to_status=RUNNING,
        when=Q(last_dispatched_at__lt=later),
    )


def test_heartbeat_and_finish_only_touch_a_row_still_running(operation):
    assert not job_heartbeat(
        Operation, operation.pk, running_status=RUNNING, heartbeat_field="last_dispatched_at"
    )
    job_claim(Operation, operation.pk, from_status=QUEUED, to_status=RUNNING)
    beat = timezone.now() + dt.timedelta(seconds=5)
    assert job_heartbeat(
        Operation,
        operation.pk,
        running_status=RUNNING,
        heartbeat_field="last_dispatched_at",
        now=beat,
    )
    assert job_finish(
        Operation, operation.pk, from_status=RUNNING, to_status="failed", error="first"
    )
    # Whoever ends it second changes nothing.
    assert not job_finish(
        Operation, operation.pk, from_status=RUNNING, to_status="succeeded", error="second"
    )
    operation.refresh_from_db()
    assert (operation.status, operation.error) == ("failed", "first")
    assert operation.last_dispatched_at == beat and operation.finished_at is not None


def test_the_sweep_redispatches_lost_rows_once_and_fails_dead_ones(operation):
    sent, failed = [], []

    def fail(row, now):
        failed.append(row.pk)
        return job_finish(Operation, row.pk, from_status=RUNNING, to_status="failed", now=now)

    spec = JobSpec(
        model=Operation,
        queued=QUEUED,
        running=RUNNING,
        dispatch=lambda row: sent.append(row.pk),
        fail=fail,
        lost_after=dt.timedelta(seconds=30),
        queued_field="last_dispatched_at",
        dispatch_count_field="dispatch_count",
        time_limit=lambda row: dt.timedelta(seconds=row.time_limit_seconds),
        fail_at_limit=True,
    )
    assert job_sweep(spec) == {"redispatched": 0, "given_up": 0, "failed": 0}
    later = timezone.now() + dt.timedelta(minutes=1)
    assert job_sweep(spec, now=later)["redispatched"] == 1
    # Sent again once: a second sweep at the same moment finds the dispatch time moved.
    assert job_sweep(spec, now=later)["redispatched"] == 0
    operation.refresh_from_db()
    assert sent == [operation.pk] and operation.dispatch_count == 2

    job_claim(Operation, operation.pk, from_status=QUEUED, to_status=RUNNING, started_at=later)
    assert job_sweep(spec, now=later + dt.timedelta(seconds=59))["failed"] == 0
    assert job_sweep(spec, now=later + dt.timedelta(seconds=60))["failed"] == 1
    operation.refresh_from_db()
    assert operation.status == "failed" and failed == [operation.pk]


def test_the_sweep_gives_up_on_rows_queued_too_long(operation):
    ended = []
    spec = JobSpec(
        model=Operation,
        queued=QUEUED,
        running=RUNNING,
        dispatch=lambda row: pytest.fail("a row given up on must not be sent again"),
        fail=lambda row, now: False,
        lost_after=dt.timedelta(seconds=30),
        queued_field="last_dispatched_at",
        give_up=lambda row, now: ended.append(row.pk) or True,
        give_up_after=dt.timedelta(hours=1),
    )
    counts = job_sweep(spec, now=timezone.now() + dt.timedelta(hours=2))
    assert counts == {"redispatched": 0, "given_up": 1, "failed": 0}
    assert ended == [operation.pk]


def test_a_fixed_time_limit_fails_only_rows_past_it_unless_told_otherwise(operation):
    started = timezone.now()
    job_claim(Operation, operation.pk, from_status=QUEUED, to_status=RUNNING, started_at=started)

    def spec(**boundary):
        return JobSpec(
            model=Operation,
            queued=QUEUED,
            running=RUNNING,
            dispatch=lambda row: None,
            fail=lambda row, now: job_finish(
                Operation, row.pk, from_status=RUNNING, to_status="failed", now=now
            ),
            lost_after=dt.timedelta(seconds=30),
            time_limit=dt.timedelta(seconds=60),
            **boundary,
        )

    at_limit = started + dt.timedelta(seconds=60)
    assert job_sweep(spec(), now=at_limit)["failed"] == 0
    assert job_sweep(spec(fail_at_limit=True), now=at_limit)["failed"] == 1


def test_a_row_with_its_own_retry_time_is_sent_when_it_comes_not_by_its_age(operation):
    """`retry_at_field` (notifications' backoff): a row with a retry time waits for it
    however old it is; a row without one is lost once it is older than lost_after."""
    sent = []
    spec = JobSpec(
        model=Operation,
        queued=QUEUED,
        running=RUNNING,
        dispatch=lambda row: sent.append(row.pk),
        fail=lambda row, now: False,
        lost_after=dt.timedelta(seconds=30),
        queued_field="requested_at",
        lost_lookup="lte",
        retry_at_field="last_dispatched_at",
    )
    retry_at = operation.requested_at + dt.timedelta(minutes=10)
    Operation.objects.filter(pk=operation.pk).update(last_dispatched_at=retry_at)
    # Long past lost_after, but its retry has not come.
    assert job_sweep(spec, now=retry_at - dt.timedelta(seconds=1))["redispatched"] == 0
    assert job_sweep(spec, now=retry_at)["redispatched"] == 1

    Operation.objects.filter(pk=operation.pk).update(last_dispatched_at=None)
    just_queued = operation.requested_at + dt.timedelta(seconds=29)
    assert job_sweep(spec, now=just_queued)["redispatched"] == 0
    assert job_sweep(spec, now=operation.requested_at + dt.timedelta(seconds=30)) == {
        "redispatched": 1,
        "given_up": 0,
        "failed": 0,
    }
    assert sent == [operation.pk, operation.pk]


@pytest.mark.parametrize("dead_first", [False, True])
def test_a_dead_row_put_back_in_the_queue_is_sent_by_the_same_sweep_when_asked(
    operation, dead_first
):
    """`fail_dead_first`: a kind whose `fail` requeues the row (a notification is retried)
    has it dispatched in the same sweep; otherwise the next sweep sends it."""
    started = timezone.now()
    job_claim(Operation, operation.pk, from_status=QUEUED, to_status=RUNNING, started_at=started)
    sent = []

    def requeue(row, now):
        return job_finish(
            Operation,
            row.pk,
            from_status=RUNNING,
            to_status=QUEUED,
            finished_field=None,
            last_dispatched_at=now,
        )

    spec = JobSpec(
        model=Operation,
        queued=QUEUED,
        running=RUNNING,
        dispatch=lambda row: sent.append(row.pk),
        fail=requeue,
        lost_after=dt.timedelta(0),
        queued_field="last_dispatched_at",
        lost_lookup="lte",
        time_limit=dt.timedelta(seconds=60),
        fail_dead_first=dead_first,
    )
    counts = job_sweep(spec, now=started + dt.timedelta(seconds=61))
    assert counts["failed"] == 1
    assert counts["redispatched"] == (1 if dead_first else 0)
    assert sent == ([operation.pk] if dead_first else [])
    operation.refresh_from_db()
    assert operation.status == QUEUED
