"""The row-first lifecycle: refusals, one change per target, cancel, sweeper, timeline."""

import datetime as dt

import pytest
import redis
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.utils import timezone

from incidents.models import TimelineKind
from incidents.services import incident_open
from opsportal.audit.models import AuditRecord
from opsportal.operations.models import Operation, OperationStatus
from opsportal.operations.services import (
    OperationRefused,
    operation_cancel,
    operation_execute,
    operation_permission,
    operation_request,
    operations_sweep,
)
from opsportal.operations.tasks import execute_operation


def test_every_kind_has_its_own_permission(operator):
    from django.contrib.auth.models import Permission

    from opsportal.operations.kinds import KINDS

    codenames = set(
        Permission.objects.filter(content_type__app_label="operations").values_list(
            "codename", flat=True
        )
    )
    for kind in KINDS:
        assert operation_permission(kind).split(".")[1] in codenames
    # A user in no role group holds none of them.
    from django.contrib.auth import get_user_model

    nobody = get_user_model().objects.create_user("nobody", password="pw-nobody-123!")
    assert not nobody.has_perm(operation_permission("container_restart"))


def test_a_second_change_on_the_same_target_is_refused_naming_the_first(
    redis_target, operator, role_user
):
    first = operation_request(
        kind="cache_clear", target=redis_target, params={}, actor=operator, reason="stale"
    )
    assert first.status == OperationStatus.QUEUED and first.changing
    with pytest.raises(OperationRefused) as refused:
        operation_request(
            kind="cache_clear", target=redis_target, params={"pattern": "x*"}, actor=operator
        )
    assert f"Clear cache (#{first.pk}), queued, requested by oscar" in refused.value.message
    # Reading is never blocked by a change in progress.
    reading = operation_request(
        kind="cache_statistics", target=redis_target, params={}, actor=operator
    )
    assert reading.status == OperationStatus.QUEUED
    operation_cancel(operation=first, actor=role_user("On-call engineers"))
    assert first.status == OperationStatus.CANCELLED
    assert execute_operation.apply(args=[first.pk]).get() is None  # a cancelled row never runs
    again = operation_request(kind="cache_clear", target=redis_target, params={}, actor=operator)
    assert again.pk != first.pk


def test_a_running_operation_cannot_be_cancelled_and_runs_once(redis_target, operator, role_user):
    operation = operation_request(
        kind="cache_statistics", target=redis_target, params={}, actor=operator
    )
    execute_operation.apply(args=[operation.pk])
    assert execute_operation.apply(args=[operation.pk]).get() is None  # redelivery: no harm
    with pytest.raises(OperationRefused, match="only a queued operation can be cancelled"):
        operation_cancel(operation=operation, actor=role_user("On-call engineers"))
    records = AuditRecord.objects.filter(
        object_type="operations.operation", object_id=str(operation.pk)
    )
    assert list(records.order_by("id").values_list("outcome", flat=True)) == [
        "requested",
        "success",
    ]


@pytest.mark.parametrize(
    ("role", "may"),
    [
        ("Viewers", False),
        ("Database admins", False),  # they may not clear a cache, so not take one back
        ("Security team", False),
        ("On-call engineers", True),
        ("DevOps", True),
    ],
)
def test_cancelling_needs_the_permission_to_run_its_kind_and_is_audited(
    role, may, redis_target, operator, role_user
):
    """Who may ask for a kind of operation may take a queued one back (found by the role
    matrix: cancelling needed change_operation, which no role holds)."""
    operation = operation_request(
        kind="cache_clear", target=redis_target, params={}, actor=operator, reason="stale"
    )
    user = role_user(role)
    records = AuditRecord.objects.filter(
        object_type="operations.operation", object_id=str(operation.pk), actor=user
    )
    if not may:
        with pytest.raises(PermissionDenied, match=r"operations\.run_cache_clear"):
            operation_cancel(operation=operation, actor=user)
        operation.refresh_from_db()
        assert operation.status == OperationStatus.QUEUED
        # The refused attempt is on the record too, as the canceller's.
        assert records.get().outcome == "failure"
        assert "refused" in records.get().message
        return
    operation_cancel(operation=operation, actor=user)
    operation.refresh_from_db()
    assert operation.status == OperationStatus.CANCELLED
    assert operation.error == f"Cancelled by {user.username} before it started."
    # Recorded as the canceller's act, not the requester's.
    cancelled = records.get()
    assert cancelled.outcome == "failure" and "Cancelled by" in cancelled.message


def test_wrong_target_kind_and_unknown_parameters_are_refused(redis_target, operator):
    with pytest.raises(OperationRefused, match="Probe the API needs an HTTP endpoint; test-redis"):
        operation_request(kind="api_probe", target=redis_target, params={}, actor=operator)
    with pytest.raises(OperationRefused, match="does not take colour"):
        operation_request(
            kind="cache_clear", target=redis_target, params={"colour": 1}, actor=operator
        )
    with pytest.raises(OperationRefused, match="Unknown operation kind"):
        operation_request(kind="reboot_world", target=redis_target, params={}, actor=operator)
    assert not Operation.objects.exists()


def test_output_is_bounded(redis_target, operator):
    from opsportal.operations.models import OUTPUT_LIMIT_CHARS
    from opsportal.operations.services import _finish

    operation = operation_request(
        kind="cache_statistics", target=redis_target, params={}, actor=operator
    )
    Operation.objects.filter(pk=operation.pk).update(status=OperationStatus.RUNNING)
    _finish(operation, status=OperationStatus.SUCCEEDED, output="x" * (OUTPUT_LIMIT_CHARS + 10))
    operation.refresh_from_db()
    assert len(operation.output) < OUTPUT_LIMIT_CHARS + 100
    assert operation.output.endswith("(10 more characters not kept)")


def test_sweeper_redispatches_lost_rows_through_the_real_broker(
    redis_target, operator, django_capture_on_commit_callbacks
):
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.delete("operations")
    operation = operation_request(
        kind="cache_statistics", target=redis_target, params={}, actor=operator
    )
    # The request's own dispatch waits for a commit that this test's transaction never
    # makes: just like a broker outage, nothing reached the queue.
    assert broker.llen("operations") == 0
    with django_capture_on_commit_callbacks(execute=True):
        counts = operations_sweep(now=timezone.now() + dt.timedelta(seconds=31))
    assert counts["redispatched"] == 1
    assert broker.llen("operations") == 1
    operation.refresh_from_db()
    assert operation.dispatch_count == 2
    broker.delete("operations")


def test_sweeper_fails_orphaned_and_long_queued_rows(redis_target, http_endpoint, operator, teams):
    incident = incident_open(
        title="slow",
        severity="sev3",
        category="api",
        reporter=operator,
        affected_systems=[http_endpoint],
    )
    running = operation_request(
        kind="api_probe", target=http_endpoint, params={}, actor=operator, incident=incident
    )
    started = timezone.now() - dt.timedelta(seconds=400)
    Operation.objects.filter(pk=running.pk).update(
        status=OperationStatus.RUNNING, started_at=started
    )
    stale = operation_request(
        kind="cache_statistics", target=redis_target, params={}, actor=operator
    )
    Operation.objects.filter(pk=stale.pk).update(
        requested_at=timezone.now() - dt.timedelta(hours=2),
        last_dispatched_at=timezone.now() - dt.timedelta(hours=2),
    )
    counts = operations_sweep()
    assert counts == {"redispatched": 0, "given_up": 1, "orphaned": 1, "approvals_expired": 0}
    running.refresh_from_db()
    stale.refresh_from_db()
    assert running.status == OperationStatus.FAILED
    assert "The worker running it stopped answering" in running.error
    assert (
        stale.status == OperationStatus.FAILED
        and "No worker started it within 60 minutes" in stale.error
    )
    event = incident.timeline.filter(kind=TimelineKind.OPERATION).last()
    assert (
        "Probe the API on test-api failed: The worker running it stopped answering" in event.message
    )
    assert operation_execute(operation_id=running.pk) is None


@pytest.fixture
def teams(db):
    from opsportal.people.services import people_load_defaults

    people_load_defaults()


def test_gauges_count_active_operations(redis_target, operator):
    from opsportal.health.metrics import render

    operation_request(kind="cache_statistics", target=redis_target, params={}, actor=operator)
    text = render().decode()
    assert 'opsportal_operations_active{status="queued"} 1.0' in text
    assert 'opsportal_incidents_open{severity="sev1"} 0.0' in text
