"""Runbooks on an incident: attaching a runbook as a checklist, ticking a step done,
running a step's operation (and its result landing on the timeline), and the runbook's
four default playbooks."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from incidents.models import (
    Category,
    Incident,
    IncidentStep,
    Phase,
    Runbook,
    RunbookStep,
    Source,
    TimelineKind,
)
from incidents.services._common import IncidentRefused, _audit, _bounded, timeline_add
from opsportal.actors import acting_user, actor_require
from opsportal.operations.kinds import KINDS
from opsportal.operations.models import Operation, OperationStatus
from opsportal.systems.models import System
from opsportal.validators import NOTE_MAX_LENGTH


def _default_target(incident: Incident, kind: str, params: dict) -> System | None:
    from opsportal.operations.runners import InvalidTarget, check_target

    for system in incident.affected_systems.select_related(
        "dockerengine", "postgresdatabase", "rediscache", "httpendpoint", "docker_engine"
    ):
        try:
            check_target(kind, system, params)
        except (InvalidTarget, ValueError):
            continue
        return system
    return None


def incident_attach_runbook(
    *, incident: Incident, runbook: Runbook, actor, source: str = Source.PERSON
) -> list[IncidentStep]:
    """Copy the runbook's steps into the incident as a checklist; steps bound to an
    operation get the first affected system that operation can act on as their target."""
    actor_require(actor, "incidents.change_incident", doing="attach a runbook to an incident")
    return runbook_attach_on_opening(incident=incident, runbook=runbook, actor=actor, source=source)


def runbook_attach_on_opening(
    *, incident: Incident, runbook: Runbook, actor, source: str = Source.PERSON
) -> list[IncidentStep]:
    """Attach the runbook as part of opening the incident (the opener's permission to open
    covers the runbook its category names); incident_attach_runbook for anyone else."""
    with transaction.atomic():
        locked = Incident.objects.select_for_update().get(pk=incident.pk)
        if IncidentStep.objects.filter(incident=locked, runbook_step__runbook=runbook).exists():
            raise IncidentRefused(f"Runbook {runbook.name!r} is already attached.")
        start = (
            IncidentStep.objects.filter(incident=locked)
            .order_by("-position")
            .values_list("position", flat=True)
            .first()
            or 0
        )
        steps = []
        for offset, step in enumerate(
            RunbookStep.objects.filter(runbook=runbook).order_by("position"), start=1
        ):
            steps.append(
                IncidentStep(
                    incident=locked,
                    runbook_step=step,
                    phase=step.phase,
                    position=start + offset,
                    text=step.text,
                    operation_kind=step.operation_kind,
                    operation_params=step.operation_params,
                    target=_default_target(locked, step.operation_kind, step.operation_params)
                    if step.operation_kind
                    else None,
                )
            )
        IncidentStep.objects.bulk_create(steps)
        if locked.runbook_id is None:
            locked.runbook = runbook
            locked.save(update_fields=["runbook"])
        timeline_add(
            incident=locked,
            kind=TimelineKind.CHANGE,
            message=f"Attached runbook {runbook.name!r}: {len(steps)} steps "
            f"({sum(1 for s in steps if s.operation_kind)} run an operation)",
            actor=actor,
            source=source,
        )
        _audit(locked, f"Attached runbook {runbook.name}", actor)
    incident.refresh_from_db()
    return steps


def incident_step_done(*, step: IncidentStep, actor, note: str = "") -> IncidentStep:
    note = _bounded(note, max_length=NOTE_MAX_LENGTH, what="note")
    with transaction.atomic():
        locked = IncidentStep.objects.select_for_update().select_related("incident").get(pk=step.pk)
        if locked.done:
            raise IncidentRefused(f"Step {locked.text!r} is already done.")
        locked.done, locked.done_at = True, timezone.now()
        locked.done_by = acting_user(actor)
        locked.note = note.strip()
        locked.save(update_fields=["done", "done_at", "done_by", "note"])
        timeline_add(
            incident=locked.incident,
            kind=TimelineKind.STEP,
            message=f"Step done: {Phase(locked.phase).label} — {locked.text}"
            + (f" ({locked.note})" if locked.note else ""),
            actor=actor,
        )
        _audit(locked.incident, f"Checklist step done: {locked.text}", actor)
    return locked


def step_run_permissions(kind: str) -> list[str]:
    """What running a step of this operation kind needs: the page and the service ask the same."""
    from opsportal.operations.services import operation_permission

    return ["incidents.run_incident_steps", operation_permission(kind)]


def incident_step_can_run(*, step: IncidentStep, actor) -> bool:
    """Whether the incident page offers `actor` a Run button on this step: it runs a known
    operation and `actor` holds what incident_step_run will ask for. (ModelBackend caches
    a user's permissions after the first check, so a checklist costs one pair of queries.)"""
    return step.operation_kind in KINDS and actor.has_perms(
        step_run_permissions(step.operation_kind)
    )


REASON_FOR_CHANGE = "This operation changes the system: say why."


def reason_for_change_require(*, kind: str, reason: str) -> None:
    """An operation that changes a system is run only with the reason of whoever asks for it
    (ValidationError on "reason"); the run page's form marks the field required with the same
    words."""
    if kind in KINDS and KINDS[kind].changing and not reason.strip():
        raise ValidationError({"reason": [REASON_FOR_CHANGE]})


def incident_step_run(
    *,
    step: IncidentStep,
    actor,
    target: System | None = None,
    params: dict | None = None,
    reason: str = "",
    preview: dict | None = None,
    break_glass_reason: str = "",
) -> Operation:
    """Request the step's operation for the incident. Refused unless the actor may run
    incident steps and this kind of operation (checked here as well as by the page). A kind
    that needs approval waits for it (break-glass: during a SEV1, with a reason, runs now).
    `preview`: what the page showed it would do (opsportal.operations.previews)."""
    from opsportal.operations.services import OperationRefused, operation_request

    if not step.operation_kind:
        raise IncidentRefused(f"Step {step.text!r} is manual: mark it done with a note.")
    needed = step_run_permissions(step.operation_kind)
    if not (acting_user(actor) is not None and actor.has_perms(needed)):
        raise IncidentRefused(
            f"Running {step.operation_kind} needs the permissions "
            f"{' and '.join(needed)}; {actor or 'nobody'} does not hold them."
        )
    reason_for_change_require(kind=step.operation_kind, reason=reason)
    target = target or step.target
    if target is None:
        raise IncidentRefused(
            f"Step {step.text!r} has no system to act on: choose one (add the affected "
            "system to the incident, or pick it on the run page)."
        )
    with transaction.atomic():
        try:
            operation = operation_request(
                kind=step.operation_kind,
                target=target,
                params=step.operation_params if params is None else params,
                actor=actor,
                reason=reason
                or (
                    ""
                    if preview and preview.get("failed")
                    else f"Incident #{step.incident_id}: {step.text}"
                ),
                incident=step.incident,
                preview=preview,
                break_glass_reason=break_glass_reason,
            )
        except OperationRefused as exc:
            raise IncidentRefused(exc.message) from exc
        IncidentStep.objects.filter(pk=step.pk).update(last_operation=operation, target=target)
        step.last_operation, step.target = operation, target
        timeline_add(
            incident=step.incident,
            kind=TimelineKind.OPERATION,
            message=f"Requested {operation.get_kind_display()} on {target} for step "
            f"{step.text!r} (operation #{operation.pk})" + _approval_note(operation),
            actor=actor,
            operation=operation,
        )
    return operation


def incident_operation_request(
    *,
    incident: Incident,
    kind: str,
    target: System,
    actor,
    params: dict | None = None,
    reason: str = "",
    break_glass_reason: str = "",
) -> Operation:
    """Request an operation for the incident outside its checklist (the API's "run this
    now"): the same permissions as running a step of that kind (PermissionDenied naming
    them), a changing kind needs a reason (ValidationError on "reason"), and the operation
    service's own rules (the incident's systems only, one change per target at a time)."""
    from django.core.exceptions import PermissionDenied

    from opsportal.operations.services import OperationRefused, operation_request

    needed = step_run_permissions(kind) if kind in KINDS else []
    missing = [p for p in needed if acting_user(actor) is None or not actor.has_perm(p)]
    if missing:
        raise PermissionDenied(
            f"Running {kind} needs the permission {' and '.join(repr(p) for p in missing)}."
        )
    reason_for_change_require(kind=kind, reason=reason)
    with transaction.atomic():
        try:
            operation = operation_request(
                kind=kind,
                target=target,
                params=params or {},
                actor=actor,
                reason=reason.strip() or f"Incident #{incident.pk}",
                incident=incident,
                break_glass_reason=break_glass_reason,
            )
        except OperationRefused as exc:
            raise IncidentRefused(exc.message) from exc
        timeline_add(
            incident=incident,
            kind=TimelineKind.OPERATION,
            message=f"Requested {operation.get_kind_display()} on {target} "
            f"(operation #{operation.pk})" + _approval_note(operation),
            actor=actor,
            operation=operation,
        )
    return operation


def _approval_note(operation: Operation) -> str:
    from opsportal.audit.models import AuditRecord

    if operation.status == OperationStatus.AWAITING:
        return ": awaiting approval by a second person"
    marked = AuditRecord.objects.filter(
        object_type=operation._meta.label_lower,
        object_id=str(operation.pk),
        changes__break_glass=True,
    )
    return ": BREAK-GLASS, run without approval (Security team notified)" if marked.exists() else ""


def on_approval_decided(sender, approval, **kwargs) -> None:
    """An operation's approval decided (approved, rejected, expired, withdrawn) lands on its
    incident's timeline."""
    operation = approval.subject
    if not isinstance(operation, Operation) or not operation.incident_id:
        return
    by = approval.decided_by.get_username() if approval.decided_by else "nobody in time"
    timeline_add(
        incident=Incident.objects.get(pk=operation.incident_id),
        kind=TimelineKind.OPERATION,
        message=f"{approval.get_status_display()} ({by}) operation #{operation.pk}, "
        f"{operation.get_kind_display()} on {operation.target}"
        + (f": {approval.decision_reason}" if approval.decision_reason else ""),
        actor=approval.decided_by,
        source=Source.PERSON if approval.decided_by else Source.WORKER,
        operation=operation,
    )


def on_operation_finished(sender, operation: Operation, **kwargs) -> None:
    """An operation linked to an incident lands on its timeline with its output; a step that
    ran it successfully is marked done."""
    if not operation.incident_id:
        return
    incident = Incident.objects.get(pk=operation.incident_id)
    verdict = operation.get_status_display().lower()
    first_line = (operation.error or operation.output).split("\n", 1)[0][:300]
    timeline_add(
        incident=incident,
        kind=TimelineKind.OPERATION,
        message=f"{operation.get_kind_display()} on {operation.target} {verdict}: {first_line}",
        source=Source.WORKER,
        output=operation.error if operation.error else operation.output,
        operation=operation,
    )
    if operation.status == OperationStatus.SUCCEEDED:
        IncidentStep.objects.filter(last_operation=operation, done=False).update(
            done=True,
            done_at=timezone.now(),
            done_by=operation.requested_by,
            note=f"Operation #{operation.pk} succeeded",
        )


# --- defaults ---------------------------------------------------------------------------

# The runbook's playbooks, verbatim; each step optionally bound to an operation kind.
DEFAULT_RUNBOOKS = [
    {
        "name": "High API Response Times",
        "category": Category.API,
        "symptoms": ["API responses >500ms", "User complaints about slow loading"],
        "steps": [
            (Phase.SYMPTOMS, "API responses >500ms", "api_probe", {"count": 20}),
            (Phase.SYMPTOMS, "User complaints about slow loading", "", {}),
            (
                Phase.INVESTIGATION,
                "Check database performance",
                "db_long_queries",
                {"min_seconds": 5},
            ),
            (Phase.INVESTIGATION, "Review API logs", "container_logs", {"lines": 200}),
            (Phase.INVESTIGATION, "Check Redis cache hit rates", "cache_statistics", {}),
            (Phase.INVESTIGATION, "Monitor container resources", "container_stats", {}),
            (Phase.RESOLUTION, "Restart slow services", "container_restart", {}),
            (Phase.RESOLUTION, "Clear cache if needed", "cache_clear", {}),
            (Phase.RESOLUTION, "Scale containers if necessary", "service_scale", {"replicas": 2}),
        ],
    },
    {
        "name": "Database Connection Issues",
        "category": Category.DATABASE,
        "symptoms": ["Connection timeouts", '"Too many connections" errors'],
        "steps": [
            (Phase.SYMPTOMS, "Connection timeouts", "", {}),
            (Phase.SYMPTOMS, '"Too many connections" errors', "db_connections", {}),
            (Phase.INVESTIGATION, "Check connection pool status", "db_connections", {}),
            (Phase.INVESTIGATION, "Review database logs", "db_container_logs", {"lines": 200}),
            (
                Phase.INVESTIGATION,
                "Monitor active connections",
                "db_long_queries",
                {"min_seconds": 0},
            ),
            (
                Phase.RESOLUTION,
                "Restart database connections",
                "db_terminate_idle",
                {"idle_seconds": 0},
            ),
            (Phase.RESOLUTION, "Increase connection pool size", "", {}),
            (
                Phase.RESOLUTION,
                "Kill long-running queries",
                "db_terminate_queries",
                {"min_seconds": 300},
            ),
        ],
    },
    {
        "name": "Container Issues",
        "category": Category.CONTAINER,
        "symptoms": ["Containers not starting", "OOMKilled errors", "High CPU usage"],
        "steps": [
            (Phase.SYMPTOMS, "Containers not starting", "container_list", {}),
            (Phase.SYMPTOMS, "OOMKilled errors", "container_inspect", {}),
            (Phase.SYMPTOMS, "High CPU usage", "container_stats", {}),
            (Phase.INVESTIGATION, "Check container logs", "container_logs", {"lines": 200}),
            (Phase.INVESTIGATION, "Monitor resource usage", "container_stats", {}),
            (
                Phase.INVESTIGATION,
                "Review Docker daemon logs",
                "engine_events",
                {"since_minutes": 60},
            ),
            (Phase.RESOLUTION, "Restart containers", "container_restart", {}),
            (
                Phase.RESOLUTION,
                "Increase resource limits",
                "container_update_limits",
                {"memory_mb": 512},
            ),
            (Phase.RESOLUTION, "Check for memory leaks", "container_stats", {}),
        ],
    },
    {
        "name": "Security Incident Response",
        "category": Category.SECURITY,
        "symptoms": [],
        "steps": [
            (Phase.IMMEDIATE_RESPONSE, "Isolate affected systems", "container_isolate", {}),
            (Phase.IMMEDIATE_RESPONSE, "Preserve evidence", "evidence_preserve", {}),
            (Phase.IMMEDIATE_RESPONSE, "Notify security team", "", {}),
            (Phase.INVESTIGATION, "Review security logs", "container_logs", {"lines": 1000}),
            (Phase.INVESTIGATION, "Check access patterns", "", {}),
            (Phase.INVESTIGATION, "Analyze attack vectors", "", {}),
            (Phase.RECOVERY, "Patch vulnerabilities", "", {}),
            (Phase.RECOVERY, "Update security policies", "", {}),
            (Phase.RECOVERY, "Monitor for further activity", "", {}),
        ],
    },
]


def incidents_load_defaults() -> None:
    """The runbook's four playbooks, created once; an operator's edits are never overwritten."""
    for definition in DEFAULT_RUNBOOKS:
        if Runbook.objects.filter(name=definition["name"]).exists():
            continue
        with transaction.atomic():
            runbook = Runbook.objects.create(
                name=definition["name"],
                category=definition["category"],
                symptoms="\n".join(definition["symptoms"]),
            )
            RunbookStep.objects.bulk_create(
                RunbookStep(
                    runbook=runbook,
                    phase=phase,
                    position=position,
                    text=text,
                    operation_kind=kind,
                    operation_params=params,
                )
                for position, (phase, text, kind, params) in enumerate(definition["steps"], 1)
            )
