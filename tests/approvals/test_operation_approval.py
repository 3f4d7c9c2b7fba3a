"""Two-person approval of an incident's operations (issue 14), against the real target
PostgreSQL and the real broker: "terminate all connections" waits for a second person, is
never dispatched while it waits, runs once another DBA approves; the requester's own
approval, an expired and an already-decided request are refused and change nothing."""

import datetime as dt

import psycopg
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.utils import timezone

from incidents.models import IncidentStep
from incidents.services import IncidentRefused, incident_open, incident_resolve, incident_step_run
from incidents.services.runbooks import incidents_load_defaults
from opsportal.access import groups_load_defaults
from opsportal.approvals.models import ApprovalRequest, ApprovalStatus
from opsportal.approvals.services import ApprovalRefused, approval_decide, approval_for
from opsportal.audit.models import AuditRecord
from opsportal.operations.models import Operation, OperationStatus
from opsportal.operations.services import (
    OperationRefused,
    operation_cancel,
    operation_request,
    operations_load_defaults,
    operations_sweep,
)
from opsportal.operations.tasks import execute_operation
from opsportal.people.models import Notification, Responsibility, Team
from opsportal.people.services import people_load_defaults
from tests.workers import clear_queue, queued_tasks

pytestmark = pytest.mark.django_db

STEP = "Restart database connections"


@pytest.fixture
def world(db, postgres_target):
    """The seeded roles, teams, runbooks and approval policies; two DBAs and an on-call
    engineer; a SEV2 database incident on the real target with its runbook attached."""
    groups_load_defaults()
    people_load_defaults()
    incidents_load_defaults()
    operations_load_defaults()
    Team.objects.filter(responsibility=Responsibility.SECURITY).update(email="sec@example.com")
    users = {}
    for name, group in [("dana", "Database admins"), ("dev", "Database admins")]:
        users[name] = get_user_model().objects.create_user(
            name, f"{name}@example.com", "pw-123-xyz!", is_staff=True
        )
        users[name].groups.add(Group.objects.get(name=group))
    users["olga"] = get_user_model().objects.create_user("olga", "olga@example.com", "pw-1!")
    users["olga"].groups.add(Group.objects.get(name="On-call engineers"))
    incident = incident_open(
        title="Too many connections",
        severity="sev2",
        category="database",
        reporter=users["dana"],
        affected_systems=[postgres_target],
        runbook_name="Database Connection Issues",
    )
    step = IncidentStep.objects.get(incident=incident, text=STEP)
    return users, incident, step


@pytest.fixture
def idle_connection(target_database_dsn):
    conn = psycopg.connect(target_database_dsn, autocommit=True, application_name="leaky-pool")
    yield conn
    conn.close()


def _request(step, user, **kwargs):
    return incident_step_run(step=step, actor=user, reason="pool leak", **kwargs)


def test_terminate_all_waits_is_not_dispatched_and_runs_after_a_second_dba_approves(
    world, idle_connection, django_capture_on_commit_callbacks
):
    (users, incident, step) = world
    clear_queue(settings.CELERY_BROKER_URL)
    with django_capture_on_commit_callbacks(execute=True):
        operation = _request(step, users["dana"])
    assert operation.status == OperationStatus.AWAITING
    assert operation.dispatch_count == 0 and operation.last_dispatched_at is None
    assert not [t for t in queued_tasks(settings.CELERY_BROKER_URL) if t[0] == "operations.execute"]
    approval = approval_for(operation)
    assert approval.status == ApprovalStatus.PENDING
    assert approval.expires_at - approval.requested_at == dt.timedelta(minutes=30)
    # The other DBA is emailed a link to the approval page; the requester is not.
    emails = Notification.objects.filter(subject__startswith="Approval needed")
    assert {n.recipient for n in emails if n.recipient} == {"dev@example.com"}
    assert f"/admin/approvals/approvalrequest/{approval.pk}/change/" in emails[0].body
    # The sweeper leaves a waiting row alone: nothing re-dispatched, nothing given up.
    assert operations_sweep(now=timezone.now() + dt.timedelta(minutes=10)) == {
        "redispatched": 0,
        "given_up": 0,
        "orphaned": 0,
        "approvals_expired": 0,
    }
    assert not [t for t in queued_tasks(settings.CELERY_BROKER_URL) if t[0] == "operations.execute"]

    with django_capture_on_commit_callbacks(execute=True):
        approval_decide(approval=approval, actor=users["dev"], approve=True, reason="seen it")
    operation.refresh_from_db()
    assert operation.status == OperationStatus.QUEUED
    assert ("operations.execute", operation.pk) in queued_tasks(settings.CELERY_BROKER_URL)
    clear_queue(settings.CELERY_BROKER_URL)
    execute_operation.apply(args=[operation.pk])
    operation.refresh_from_db()
    assert operation.status == OperationStatus.SUCCEEDED, operation.error
    with pytest.raises(psycopg.OperationalError):
        idle_connection.execute("SELECT 1")
    timeline = list(incident.timeline.order_by("at", "id").values_list("message", flat=True))
    requested = next(i for i, m in enumerate(timeline) if "awaiting approval" in m)
    approved = next(i for i, m in enumerate(timeline) if m.startswith("Approved (dev)"))
    ran = next(i for i, m in enumerate(timeline) if "succeeded" in m)
    assert requested < approved < ran, timeline
    assert "seen it" in timeline[approved]
    assert AuditRecord.objects.filter(
        object_type="approvals.approvalrequest", message__startswith="Approved by dev"
    ).exists()


def test_own_approval_is_refused_and_changes_nothing(world):
    users, _, step = world
    operation = _request(step, users["dana"])
    approval = approval_for(operation)
    with pytest.raises(ApprovalRefused, match="a second person must approve"):
        approval_decide(approval=approval, actor=users["dana"], approve=True, reason="me")
    approval.refresh_from_db()
    operation.refresh_from_db()
    assert approval.status == ApprovalStatus.PENDING and approval.decided_by is None
    assert operation.status == OperationStatus.AWAITING
    assert AuditRecord.objects.filter(
        object_type="approvals.approvalrequest", outcome="failure", message__contains="dana"
    ).exists()


def test_approver_without_the_scope_permission_is_refused(world):
    users, _, step = world
    approval = approval_for(_request(step, users["dana"]))
    with pytest.raises(PermissionDenied, match=r"approvals\.approve_databases"):
        approval_decide(approval=approval, actor=users["olga"], approve=True, reason="ok")
    approval.refresh_from_db()
    assert approval.status == ApprovalStatus.PENDING


def test_an_expired_request_is_refused_and_the_operation_is_not_run(world):
    users, incident, step = world
    operation = _request(step, users["dana"])
    approval = approval_for(operation)
    later = approval.expires_at + dt.timedelta(seconds=1)
    with pytest.raises(ApprovalRefused, match=r"expired .* nothing was run"):
        approval_decide(approval=approval, actor=users["dev"], approve=True, reason="ok", now=later)
    approval.refresh_from_db()
    operation.refresh_from_db()
    assert approval.status == ApprovalStatus.EXPIRED and approval.decided_by is None
    assert operation.status == OperationStatus.CANCELLED
    assert "Approval expired" in operation.error
    assert incident.timeline.filter(message__startswith="Expired (nobody in time)").exists()


def test_the_sweeper_expires_stale_approvals(world):
    users, _, step = world
    operation = _request(step, users["dana"])
    swept = operations_sweep(now=timezone.now() + dt.timedelta(minutes=31))
    assert swept["approvals_expired"] == 1 and swept["given_up"] == 0
    operation.refresh_from_db()
    assert operation.status == OperationStatus.CANCELLED
    assert approval_for(operation).status == ApprovalStatus.EXPIRED


def test_an_already_decided_request_is_refused(world):
    users, _, step = world
    third = get_user_model().objects.create_user("tess", "t@example.com", "pw-3!")
    third.groups.add(Group.objects.get(name="Database admins"))
    approval = approval_for(_request(step, users["dana"]))
    approval_decide(approval=approval, actor=users["dev"], approve=True, reason="go")
    with pytest.raises(ApprovalRefused, match="already approved by dev"):
        approval_decide(approval=approval, actor=third, approve=False, reason="no!")
    approval.refresh_from_db()
    assert approval.status == ApprovalStatus.APPROVED and approval.decision_reason == "go"
    assert Operation.objects.get(pk=approval.subject_id).status == OperationStatus.QUEUED


def test_approving_after_the_incident_was_resolved_is_refused_and_runs_nothing(world):
    users, incident, step = world
    operation = _request(step, users["dana"])
    approval = approval_for(operation)
    incident_resolve(incident=incident, actor=users["dana"], resolution="pool fixed upstream")
    with pytest.raises(ApprovalRefused, match=f"Incident #{incident.pk} is resolved"):
        approval_decide(approval=approval, actor=users["dev"], approve=True, reason="go")
    approval.refresh_from_db()
    operation.refresh_from_db()
    assert approval.status == ApprovalStatus.PENDING and approval.decided_by is None
    assert operation.status == OperationStatus.AWAITING and operation.dispatch_count == 0
    # The refused decision is in the audit history like every other refusal.
    refused = AuditRecord.objects.filter(
        object_type="approvals.approvalrequest", object_id=str(approval.pk), outcome="failure"
    ).get()
    assert refused.message.startswith("Approve refused for dev: Incident #")
    # Rejecting it still works and cancels the operation with the reason.
    approval_decide(approval=approval, actor=users["dev"], approve=False, reason="resolved")
    operation.refresh_from_db()
    assert operation.status == OperationStatus.CANCELLED


def test_rejection_needs_a_reason_and_cancels_the_operation(world):
    users, incident, step = world
    operation = _request(step, users["dana"])
    approval = approval_for(operation)
    with pytest.raises(ApprovalRefused, match="Give a reason"):
        approval_decide(approval=approval, actor=users["dev"], approve=False, reason="  ")
    approval_decide(approval=approval, actor=users["dev"], approve=False, reason="use the filter")
    operation.refresh_from_db()
    assert operation.status == OperationStatus.CANCELLED
    assert "Rejected by dev: use the filter" in operation.error
    assert incident.timeline.filter(message__startswith="Rejected (dev)").exists()


def test_a_narrowed_terminate_and_other_kinds_run_without_approval(world):
    users, _, step = world
    narrowed = _request(step, users["dana"], params={"application_name": "leaky-pool"})
    assert narrowed.status == OperationStatus.QUEUED
    assert not ApprovalRequest.objects.exists()


def test_a_waiting_change_holds_its_system_until_it_expires(world, postgres_target):
    users, _, step = world
    first = _request(step, users["dana"])
    with pytest.raises(IncidentRefused, match="awaiting approval"):
        _request(step, users["dev"])
    # Past its expiry, the next request expires it on the spot rather than wait for a sweep.
    later = approval_for(first).expires_at + dt.timedelta(seconds=1)
    second = operation_request(
        kind="db_terminate_idle",
        target=postgres_target,
        params={},
        actor=users["dev"],
        reason="again",
        incident=step.incident,
        now=later,
    )
    first.refresh_from_db()
    assert first.status == OperationStatus.CANCELLED
    assert second.status == OperationStatus.AWAITING


def test_cancelling_a_waiting_operation_withdraws_its_approval(world):
    users, _, step = world
    operation = _request(step, users["dana"])
    operation_cancel(operation=operation, actor=users["dana"])
    approval = approval_for(operation)
    assert approval.status == ApprovalStatus.WITHDRAWN
    with pytest.raises(ApprovalRefused, match="already withdrawn"):
        approval_decide(approval=approval, actor=users["dev"], approve=True, reason="late")


def test_break_glass_only_on_sev1_with_a_reason_notifies_security_and_is_marked(world):
    users, incident, step = world
    with pytest.raises(IncidentRefused, match=r"only possible .* active SEV1"):
        _request(step, users["dana"], break_glass_reason="no time")
    assert not Operation.objects.exists() and not ApprovalRequest.objects.exists()

    incident.severity = "sev1"
    incident.save(update_fields=["severity"])
    step.refresh_from_db()
    # A blank reason is no break-glass: it waits like any request.
    waiting = _request(step, users["dana"], break_glass_reason="   ")
    assert waiting.status == OperationStatus.AWAITING
    operation_cancel(operation=waiting, actor=users["dana"])

    operation = _request(step, users["dana"], break_glass_reason="checkout is down")
    assert operation.status == OperationStatus.QUEUED and operation.dispatch_count == 1
    assert approval_for(operation) is None
    marked = AuditRecord.objects.get(
        object_type="operations.operation", object_id=str(operation.pk), changes__break_glass=True
    )
    assert marked.changes["break_glass_reason"] == "checkout is down"
    assert marked.message.startswith("BREAK-GLASS: dana")
    security = Notification.objects.get(responsibility=Responsibility.SECURITY)
    assert security.recipient == "sec@example.com" and "checkout is down" in security.body
    assert incident.timeline.filter(message__contains="BREAK-GLASS").exists()
    with pytest.raises(OperationRefused):
        # The break-glass change holds the system like any other.
        operation_request(
            kind="db_terminate_idle",
            target=operation.target,
            params={},
            actor=users["dev"],
            incident=incident,
        )
