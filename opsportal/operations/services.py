"""Requesting, running, cancelling and sweeping operations on real systems.

A request is a row first (status queued) and a task second, dispatched after commit; the
worker claims the row atomically, acts, and stores the outcome; the sweeper re-dispatches
rows the broker lost and fails rows whose worker died (CONVENTIONS.md, "Background
operations").
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import BinaryIO

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from opsportal.actors import acting_name, acting_user
from opsportal.audit.models import AuditAction, AuditOutcome
from opsportal.audit.services import audit_record
from opsportal.jobs import JobSpec, job_claim, job_finish, job_sweep
from opsportal.operations.kinds import KINDS, InvalidParameters, clean_params
from opsportal.operations.masking import mask_credentials, mask_structure
from opsportal.operations.models import (
    BLOCKING_STATUSES,
    OUTPUT_LIMIT_CHARS,
    Evidence,
    Operation,
    OperationStatus,
)
from opsportal.operations.previews import preview_failed_reason_message
from opsportal.operations.runners import RUNNERS, InvalidTarget, check_target, resolve_engine
from opsportal.operations.runners.previewed import run_against_preview
from opsportal.operations.signals import operation_finished
from opsportal.queueing import enqueue_after_commit
from opsportal.refusals import ServiceRefused
from opsportal.systems.adapters.errors import AdapterError
from opsportal.systems.models import SPECIFIC_RELATIONS, System, SystemKind

logger = logging.getLogger(__name__)

# A queued row not picked up this long after its last dispatch was probably lost by the
# broker: dispatch it again.
REDISPATCH_AFTER = dt.timedelta(seconds=30)
# A queued operation that could not start for this long is given up: restarting a
# container an hour after someone asked is more likely to hurt than help.
GIVE_UP_QUEUED_AFTER = dt.timedelta(hours=1)
# Grace after the time limit before a running row is considered orphaned (the worker's own
# hard limit fires first and the task records the failure itself).
RUNNING_GRACE = dt.timedelta(seconds=30)


class OperationRefused(ServiceRefused):
    """The operation cannot be requested; `message` says why, in words for the operator."""

    def __init__(self, message: str, *, conflicting: Operation | None = None):
        super().__init__(message)
        self.conflicting = conflicting


def operation_permission(kind: str) -> str:
    """The permission (app_label.codename) a user needs to request this kind."""
    return f"operations.{KINDS[kind].permission}"


# Lets its holder act, from an incident, on systems the incident does not list as affected.
OPERATE_ANY_SYSTEM_PERMISSION = "operations.operate_any_system"


def incident_operation_targets(*, incident) -> QuerySet[System]:
    """The systems an operation requested for `incident` may act on: the incident's affected
    systems and the systems that run in a container on an affected Docker engine.

    `incident` is any object with an `affected_systems` relation to systems.System (the
    incidents app's Incident): the shared layer does not import the domain app."""
    affected = incident.affected_systems.all()
    return System.objects.filter(
        Q(pk__in=affected.values("pk"))
        | Q(docker_engine_id__in=affected.filter(kind=SystemKind.DOCKER).values("pk"))
    )


def _check_incident_scope(*, incident, kind: str, spec, target, actor, params: dict) -> None:
    """Refuse an operation its incident does not cover: a changing one on a resolved or
    closed incident, or one on a system outside the incident's affected systems (unless the
    actor may operate any system). Call with the incident's row locked."""
    if spec.changing and not incident.is_active:
        raise OperationRefused(
            f"Incident #{incident.pk} is {incident.get_status_display().lower()}: "
            f"{spec.label} changes the system and is refused on a resolved or closed "
            "incident. Read-only operations still run; reopen the incident to change systems."
        )
    if acting_user(actor) is not None and actor.has_perm(OPERATE_ANY_SYSTEM_PERMISSION):
        return
    if (
        kind == "service_scale"
        and params.get("swarm_service")
        and not incident.affected_systems.filter(pk=resolve_engine(target).pk).exists()
    ):
        # A Swarm service is named on its engine: only an affected engine's services are
        # in scope, not those of an engine that merely hosts an affected system.
        raise OperationRefused(
            f"Scaling Swarm service {params['swarm_service']!r} acts on the Docker engine "
            f"{resolve_engine(target)}, which incident #{incident.pk} does not list as "
            "affected. Add the engine to the incident's affected systems first."
        )
    if not incident_operation_targets(incident=incident).filter(pk=target.pk).exists():
        affected = ", ".join(sorted(s.name for s in incident.affected_systems.all())) or "none"
        raise OperationRefused(
            f"{target} is not one of the systems incident #{incident.pk} affects "
            f"(affected: {affected}). Add it to the incident's affected systems first; "
            "operations act only on the incident's systems and the containers on an "
            "affected Docker engine."
        )


def _describe_conflict(first: Operation) -> str:
    who = first.requested_by.get_username() if first.requested_by else "the system"
    return (
        f"{first.target} already has a changing operation in progress: "
        f"{first.get_kind_display()} (#{first.pk}), {first.get_status_display().lower()}, "
        f"requested by {who} at {timezone.localtime(first.requested_at):%Y-%m-%d %H:%M:%S}. "
        "Wait for it to finish or cancel it first."
    )


def active_changing_operation(*, target) -> Operation | None:
    return (
        Operation.objects.select_related("requested_by", "target")
        .filter(target=target, changing=True, status__in=BLOCKING_STATUSES)
        .first()
    )


def _approval_policy(*, spec, kind: str, params: dict, actor):
    """The approval policy a person's request of this kind waits for, or None. A request
    narrowed by one of the kind's narrowing parameters (one application's connections, not
    all) is exempt when its policy says so. The portal acting on its own is not asked."""
    from opsportal.approvals.services import approval_policy_for

    if acting_user(actor) is None:
        return None
    narrowed = any(params.get(name) for name in spec.narrowing)
    return approval_policy_for(f"operation:{kind}", narrowed=narrowed)


def _summary(spec, target, params: dict) -> str:
    return f"{spec.label} on {target}" + (
        f" with {', '.join(f'{k}={v!r}' for k, v in params.items())}" if params else ""
    )


def operation_needs_approval(*, kind: str, params: dict, actor) -> bool:
    """Whether `actor`'s request of this kind (with these parameters) will wait for a second
    person; the run page says so before the request is made."""
    spec = KINDS.get(kind)
    return (
        spec is not None
        and _approval_policy(spec=spec, kind=kind, params=params, actor=actor) is not None
    )


def operation_request(
    *,
    kind: str,
    target,
    params: dict,
    actor,
    reason: str = "",
    incident=None,
    preview: dict | None = None,
    break_glass_reason: str = "",
    now: dt.datetime | None = None,
) -> Operation:
    """Record the operation (queued) and dispatch its task once the row is committed.

    A person's request of a kind whose approval policy is on is recorded awaiting approval
    instead and not dispatched; the people who may approve it are notified. Break-glass
    (`break_glass_reason`) runs it at once, only for an incident that allows it (SEV1, still
    active): the audit record is marked and the Security team told.

    Callers check `operation_permission(kind)` for the user first. Refused (with a message
    naming the problem) for unknown kinds, bad parameters, an unsuitable target, a
    changing operation while another one is in progress on the same target, and, for an
    operation requested for an incident, a target outside the incident's systems or a
    changing operation on a resolved or closed incident.

    `preview` is what the requester was shown (opsportal.operations.previews): the
    operation acts on it. A failed preview needs a reason.
    """
    spec = KINDS.get(kind)
    if spec is None:
        raise OperationRefused(f"Unknown operation kind {kind!r}.")
    try:
        params = clean_params(kind, params)
        check_target(kind, target, params)
    except (InvalidParameters, InvalidTarget) as exc:
        raise OperationRefused(str(exc)) from exc
    if preview and preview.get("failed") and not reason.strip():
        raise OperationRefused(preview_failed_reason_message(preview))
    actor = acting_user(actor)
    now = now or timezone.now()
    policy = _approval_policy(spec=spec, kind=kind, params=params, actor=actor)
    break_glass_reason = break_glass_reason.strip()[:500]
    break_glass = policy is not None and bool(break_glass_reason)
    with transaction.atomic():
        if incident is not None:
            # Locked so the incident cannot be resolved (or lose its SEV1 for break-glass)
            # between these checks and the insert.
            incident = type(incident)._default_manager.select_for_update().get(pk=incident.pk)
        if break_glass and not (incident is not None and incident.allows_break_glass):
            raise OperationRefused(
                "Break-glass (running without approval) is only possible for an operation "
                "requested for an active SEV1 incident; ask a second person to approve it."
            )
        if incident is not None:
            _check_incident_scope(
                incident=incident, kind=kind, spec=spec, target=target, actor=actor, params=params
            )
        if spec.changing:
            first = active_changing_operation(target=target)
            if first is not None and first.status == OperationStatus.AWAITING:
                from opsportal.approvals.services import approval_expire_if_due

                # A request nobody approved in time no longer holds the system.
                if approval_expire_if_due(subject=first, now=now):
                    first = active_changing_operation(target=target)
            if first is not None:
                raise OperationRefused(_describe_conflict(first), conflicting=first)
        try:
            with transaction.atomic():
                operation = Operation.objects.create(
                    kind=kind,
                    target_id=target.pk,
                    params=params,
                    changing=spec.changing,
                    requested_by=actor,
                    reason=reason.strip()[:500],
                    incident=incident,
                    time_limit_seconds=spec.time_limit_seconds,
                    preview=preview or {},
                    status=OperationStatus.AWAITING
                    if policy is not None and not break_glass
                    else OperationStatus.QUEUED,
                    dispatch_count=0 if policy is not None and not break_glass else 1,
                    last_dispatched_at=None if policy is not None and not break_glass else now,
                )
        except IntegrityError as exc:
            # Another request for the same target won the race between check and insert.
            first = active_changing_operation(target=target)
            raise OperationRefused(
                _describe_conflict(first) if first else "Another change is in progress.",
                conflicting=first,
            ) from exc
        audit_record(
            action=AuditAction.OPERATION,
            obj=operation,
            actor=actor,
            outcome=AuditOutcome.REQUESTED,
            message=f"Requested {spec.label} on {target}"
            + (f" with {params}" if params else "")
            + (f": {operation.reason}" if operation.reason else "")
            + (" (awaiting approval)" if operation.status == OperationStatus.AWAITING else ""),
        )
        if operation.status == OperationStatus.AWAITING:
            from opsportal.approvals.services import approval_request

            approval_request(
                subject=operation,
                policy=policy,
                actor=actor,
                summary=_summary(spec, target, params)
                + (f" (incident #{incident.pk})" if incident is not None else ""),
                reason=operation.reason,
                now=now,
            )
            return operation
        if break_glass:
            from opsportal.approvals.services import break_glass_record

            break_glass_record(
                subject=operation,
                actor=actor,
                summary=_summary(spec, target, params) + f" (incident #{incident.pk})",
                reason=break_glass_reason,
            )
        _dispatch(operation)
    return operation


def _dispatch(operation: Operation) -> None:
    from opsportal.operations.tasks import execute_operation

    # The hard limit ends the task; the soft limit (a little earlier) lets it record why.
    enqueue_after_commit(
        execute_operation,
        operation.pk,
        time_limit=operation.time_limit_seconds + 15,
        soft_time_limit=operation.time_limit_seconds,
    )


def operation_execute(*, operation_id: int) -> Operation | None:
    """Claim the queued operation, run it, store its outcome. Returns None when the row was
    not queued (another worker has it, it was cancelled, or it already ran)."""
    if not job_claim(
        Operation,
        operation_id,
        from_status=OperationStatus.QUEUED,
        to_status=OperationStatus.RUNNING,
        started_at=timezone.now(),
    ):
        return None
    operation = (
        Operation.objects.select_related(
            "requested_by", *(f"target__{relation}" for relation in SPECIFIC_RELATIONS)
        )
        .select_related("target")
        .get(pk=operation_id)
    )
    status, output, result, error = OperationStatus.SUCCEEDED, "", {}, ""
    try:
        outcome = run_against_preview(RUNNERS[operation.kind], operation)
        output, result = outcome.output, outcome.result
    except (AdapterError, InvalidTarget) as exc:
        status, error = OperationStatus.FAILED, str(exc)
    except SoftTimeLimitExceeded:
        status = OperationStatus.FAILED
        error = (
            f"Timed out: stopped after its time limit of {operation.time_limit_seconds} s; "
            "the system may have finished the action anyway: check its state before trying "
            "again."
        )
    except Exception as exc:
        logger.exception("Operation %s (%s) failed unexpectedly", operation.pk, operation.kind)
        status = OperationStatus.FAILED
        error = f"Unexpected error ({type(exc).__name__}): {str(exc)[:500]}"
    return _finish(operation, status=status, output=output, result=result, error=error)


def _finish(
    operation: Operation,
    *,
    status: str,
    output: str = "",
    result: dict | None = None,
    error: str = "",
    from_statuses=(OperationStatus.RUNNING,),
    actor=None,
) -> Operation | None:
    # Whatever a runner collected (inspect output, logs, errors quoting a command line) is
    # shown in the admin, on the incident timeline and in the audit record: credentials in
    # it are masked here, once, for every kind. Evidence files are not touched.
    output, error = mask_credentials(output), mask_credentials(error)
    result = mask_structure(result or {})
    if len(output) > OUTPUT_LIMIT_CHARS:
        cut = len(output) - OUTPUT_LIMIT_CHARS
        output = output[:OUTPUT_LIMIT_CHARS] + f"\n… ({cut} more characters not kept)"
    if not job_finish(
        Operation,
        operation.pk,
        from_status=from_statuses,
        to_status=status,
        output=output,
        result=result or {},
        error=error,
    ):
        return None  # the sweeper (or a cancel) got there first
    operation.refresh_from_db()
    audit_record(
        action=AuditAction.OPERATION,
        obj=operation,
        # Whoever ended it (a cancel), else the requester: a worker acts on their behalf.
        actor=acting_user(actor) or operation.requested_by,
        outcome=AuditOutcome.SUCCESS
        if status == OperationStatus.SUCCEEDED
        else AuditOutcome.FAILURE,
        message=f"{operation.get_kind_display()} on {operation.target}: "
        + (error or output.split("\n", 1)[0])[:1000],
    )
    operation_finished.send(sender=Operation, operation=operation)
    return operation


def operation_cancel(*, operation: Operation, actor) -> Operation:
    """Cancel an operation that has not started; a running one cannot be taken back.

    Needs the permission to run the operation's kind (`operation_permission`): whoever may
    ask for a restart may take a queued one back, and nobody else. `actor=None` is the
    system itself (no user). A refusal is recorded too, as the refused person's."""
    permission = operation_permission(operation.kind)
    if actor is not None and not actor.has_perm(permission):
        who = acting_name(actor, otherwise="an anonymous user")
        audit_record(
            action=AuditAction.OPERATION,
            obj=operation,
            actor=acting_user(actor),
            outcome=AuditOutcome.FAILURE,
            message=f"Cancel refused: {who} lacks the '{permission}' permission.",
        )
        raise PermissionDenied(
            f"You need the '{permission}' permission to cancel operation #{operation.pk} "
            f"({operation.get_kind_display()})."
        )
    from opsportal.approvals.services import approval_lock, approval_withdraw

    who = acting_name(actor, otherwise="the system")
    with transaction.atomic():
        # The request's row before the operation's, in the order deciding takes them.
        approval_lock(subject=operation)
        finished = _finish(
            operation,
            status=OperationStatus.CANCELLED,
            error=f"Cancelled by {who} before it started.",
            from_statuses=(OperationStatus.QUEUED, OperationStatus.AWAITING),
            actor=actor,
        )
        if finished is not None:
            approval_withdraw(subject=finished, actor=actor)
    if finished is None:
        operation.refresh_from_db()
        raise OperationRefused(
            f"Operation #{operation.pk} is {operation.get_status_display().lower()}; only a "
            "queued operation can be cancelled (or one still awaiting approval)."
        )
    return finished


def _operation_give_up(operation: Operation, now: dt.datetime) -> bool:
    return (
        _finish(
            operation,
            status=OperationStatus.FAILED,
            error=(
                f"No worker started it within {GIVE_UP_QUEUED_AFTER.total_seconds() / 60:.0f}"
                " minutes (broker or workers down); request it again if it is still needed."
            ),
            from_statuses=(OperationStatus.QUEUED,),
        )
        is not None
    )


def _operation_fail_orphaned(operation: Operation, now: dt.datetime) -> bool:
    return (
        _finish(
            operation,
            status=OperationStatus.FAILED,
            error=(
                f"The worker running it stopped answering: no result "
                f"{(now - operation.started_at).total_seconds():.0f} s after it started "
                f"(time limit {operation.time_limit_seconds} s). The worker probably died; "
                "check the system's state before trying again."
            ),
        )
        is not None
    )


# How the shared sweeper (opsportal.jobs) treats operations: a lost row is sent again at
# most once per REDISPATCH_AFTER (counted in dispatch_count), given up after an hour in the
# queue, and failed once its own time limit plus grace has passed.
OPERATION_JOB = JobSpec(
    model=Operation,
    queued=OperationStatus.QUEUED,
    running=OperationStatus.RUNNING,
    dispatch=_dispatch,
    fail=_operation_fail_orphaned,
    lost_after=REDISPATCH_AFTER,
    queued_field="last_dispatched_at",
    dispatch_count_field="dispatch_count",
    give_up=_operation_give_up,
    give_up_after=GIVE_UP_QUEUED_AFTER,
    give_up_field="requested_at",
    order_by="requested_at",
    time_limit=lambda operation: dt.timedelta(seconds=operation.time_limit_seconds) + RUNNING_GRACE,
    # A row is failed at its time limit plus grace, as it always was.
    fail_at_limit=True,
    batch=500,
    running_batch=500,
)


def operations_sweep(*, now: dt.datetime | None = None) -> dict[str, int]:
    """Re-dispatch queued rows whose message was lost, give up on rows queued for too long,
    and fail running rows whose worker stopped answering."""
    from opsportal.approvals.services import approvals_expire

    now = now or timezone.now()
    counts = job_sweep(OPERATION_JOB, now=now)
    # Rows awaiting approval are neither queued nor running, so the job sweep leaves them
    # alone; those nobody approved in time are cancelled here.
    expired = approvals_expire(now=now, subject_model=Operation)
    return {
        "redispatched": counts["redispatched"],
        "given_up": counts["given_up"],
        "orphaned": counts["failed"],
        "approvals_expired": expired,
    }


def operations_load_defaults() -> None:
    from opsportal.operations.approval import operations_approval_load_defaults
    from opsportal.schedules import periodic_task_ensure

    operations_approval_load_defaults()
    periodic_task_ensure(
        name="Operations: re-dispatch lost and fail orphaned operations",
        task="operations.sweep",
        every_seconds=30,
        description="Queued operations whose message the broker lost run again; running "
        "ones whose worker died are failed with that reason.",
    )


class EvidenceUnavailable(ServiceRefused):
    """A preserved artefact cannot be served; `str()` says why, in words for the operator."""


EVIDENCE_DOWNLOAD_PERMISSION = "operations.download_evidence"


def evidence_open(*, evidence: Evidence, actor) -> BinaryIO:
    """Open a preserved artefact for download and record who took it (chain of custody).

    Refused (PermissionDenied) without `operations.download_evidence`, and a file that is
    gone from MEDIA_ROOT is refused with a message (EvidenceUnavailable): both are recorded
    as refused downloads, so the custody trail shows every attempt, not only the successes."""
    where = f"Evidence {evidence.name} (sha256 {evidence.sha256})" + (
        f" of incident #{evidence.incident_id}" if evidence.incident_id else ""
    )

    def refuse(message: str) -> None:
        audit_record(
            action=AuditAction.OPERATION,
            obj=evidence,
            actor=actor,
            outcome=AuditOutcome.FAILURE,
            message=f"Download refused: {message}",
        )

    if not actor.has_perm(EVIDENCE_DOWNLOAD_PERMISSION):
        who = acting_name(actor, otherwise="an anonymous user")
        refuse(f"{where}: {who} lacks the '{EVIDENCE_DOWNLOAD_PERMISSION}' permission.")
        raise PermissionDenied(
            f"You need the '{EVIDENCE_DOWNLOAD_PERMISSION}' permission to download evidence."
        )
    try:
        handle = open(Path(settings.MEDIA_ROOT) / evidence.path, "rb")  # noqa: SIM115 (FileResponse closes it)
    except OSError as exc:
        message = f"{where} cannot be read from the evidence store: {exc.strerror or exc}."
        refuse(message)
        raise EvidenceUnavailable(message) from exc
    audit_record(
        action=AuditAction.OPERATION, obj=evidence, actor=actor, message=f"{where} downloaded"
    )
    return handle
