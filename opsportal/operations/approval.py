"""Two-person approval of operations (opsportal/approvals): what approving or dropping an
operation that waits means, and the default policies (one per changing kind)."""

from __future__ import annotations

from django.utils import timezone

from opsportal.jobs import job_claim
from opsportal.operations.kinds import KINDS
from opsportal.operations.models import Operation, OperationStatus
from opsportal.operations.services import _dispatch, _finish


def _operation_approved(operation: Operation, approval) -> None:
    """Approved: the waiting row joins the queue and its task is dispatched after commit."""
    from opsportal.approvals.services import ApprovalRefused

    # The incident may have been resolved while the request waited: a change approved now
    # would act on a system its incident no longer covers (operation_request refuses the
    # same on a resolved incident). Nothing changes; the request expires or is rejected.
    incident = operation.incident
    # Read, not locked: locking it here (request row first) would invert the order in which
    # a new request for the system takes them (incident, then an expiring request).
    if incident is not None and KINDS[operation.kind].changing and not incident.is_active:
        raise ApprovalRefused(
            f"Incident #{incident.pk} is {incident.get_status_display().lower()}: operation "
            f"#{operation.pk} changes the system and is not run on a resolved or closed "
            "incident. Reject the request, or reopen the incident first."
        )
    if not job_claim(
        Operation,
        operation.pk,
        from_status=OperationStatus.AWAITING,
        to_status=OperationStatus.QUEUED,
        dispatch_count=1,
        last_dispatched_at=timezone.now(),
    ):
        operation.refresh_from_db()
        raise ApprovalRefused(
            f"Operation #{operation.pk} is {operation.get_status_display().lower()}, no longer "
            "awaiting approval; nothing was changed."
        )
    operation.refresh_from_db()
    _dispatch(operation)


def _operation_dropped(operation: Operation, approval, message: str) -> None:
    """Rejected or expired: the waiting row is cancelled with the reason (and lands on its
    incident's timeline as every finished operation does)."""
    _finish(
        operation,
        status=OperationStatus.CANCELLED,
        error=f"Not run: {message}",
        from_statuses=(OperationStatus.AWAITING,),
        actor=approval.decided_by,
    )


def operations_approval_register() -> None:
    from opsportal.approvals.services import approval_subject_register

    approval_subject_register(Operation, approved=_operation_approved, dropped=_operation_dropped)


# The defaults: terminating every idle connection of a database (no application or
# user narrowing it) waits for a second person; every other kind runs at once until an admin
# switches its policy on.
APPROVAL_REQUIRED_BY_DEFAULT = {"db_terminate_idle"}


def _approval_scope(spec) -> str:
    from opsportal.approvals.models import ApprovalScope
    from opsportal.operations.kinds import TargetType

    return {
        TargetType.POSTGRES: ApprovalScope.DATABASES,
        TargetType.REDIS: ApprovalScope.CACHES,
        TargetType.HTTP: ApprovalScope.API,
    }.get(spec.target, ApprovalScope.CONTAINERS)


def operations_approval_load_defaults() -> None:
    from opsportal.approvals.services import approvals_load_defaults

    approvals_load_defaults(
        [
            (
                f"operation:{kind}",
                f"Operation: {spec.label}",
                _approval_scope(spec),
                kind in APPROVAL_REQUIRED_BY_DEFAULT,
                bool(spec.narrowing),
            )
            for kind, spec in KINDS.items()
            if spec.changing
        ]
    )
