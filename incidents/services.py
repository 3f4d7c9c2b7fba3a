"""Every state change of an incident: opening (by a person or an alert), paging, the
lifecycle, the timeline, runbook checklists and the operations run from them.

Each writes a timeline event and an audit record; an illegal request raises
IncidentRefused with a message for the operator.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Iterable

from django.db import IntegrityError, transaction
from django.utils import timezone

from incidents.models import (
    ACTIVE_STATUSES,
    REVIEW_REQUIRED,
    Alert,
    AlertStatus,
    Category,
    Incident,
    IncidentStep,
    Phase,
    Runbook,
    RunbookStep,
    Severity,
    Source,
    Status,
    TimelineEvent,
    TimelineKind,
)
from incidents.selectors import open_incident_for_fingerprint
from opsportal.actors import acting_name, acting_user
from opsportal.audit.models import AuditAction, AuditOutcome
from opsportal.audit.services import audit_record
from opsportal.operations.models import Operation, OperationStatus
from opsportal.people.models import Responsibility, Team
from opsportal.people.services import notify
from opsportal.refusals import ServiceRefused
from opsportal.systems.models import System

logger = logging.getLogger(__name__)


class IncidentRefused(ServiceRefused):
    """The request cannot be carried out; `message` says why, for the operator."""


# --- timeline ---------------------------------------------------------------------------


def timeline_add(
    *,
    incident: Incident,
    kind: str,
    message: str,
    actor=None,
    source: str = Source.PERSON,
    output: str = "",
    operation: Operation | None = None,
) -> TimelineEvent:
    return TimelineEvent.objects.create(
        incident=incident,
        at=timezone.now(),
        kind=kind,
        source=source,
        actor=acting_user(actor),
        message=message,
        output=output,
        operation=operation,
    )


def _audit(incident: Incident, message: str, actor=None, outcome=AuditOutcome.SUCCESS) -> None:
    audit_record(
        action=AuditAction.OPERATION,
        obj=incident,
        actor=acting_user(actor),
        outcome=outcome,
        message=message,
    )


def incident_add_note(
    *, incident: Incident, actor, text: str, source: str = Source.PERSON
) -> TimelineEvent:
    text = text.strip()
    if not text:
        raise IncidentRefused("A note needs some text.")
    event = timeline_add(
        incident=incident, kind=TimelineKind.NOTE, message=text, actor=actor, source=source
    )
    _audit(incident, f"Note added: {text[:200]}", actor)
    return event


# --- paging -----------------------------------------------------------------------------

# Who the runbook's contact list says to page, by category; the on-call engineer is paged
# for everything except low-severity security/database/container incidents, which go
# straight to the owning specialists. SEV1 also pulls in DevOps (all hands).
_CATEGORY_RESPONSIBILITY = {
    Category.SECURITY: Responsibility.SECURITY,
    Category.DATABASE: Responsibility.DATABASE,
    Category.CONTAINER: Responsibility.DEVOPS,
}


def paging_responsibilities(*, severity: str, category: str) -> list[str]:
    wanted: list[str] = []
    specialist = _CATEGORY_RESPONSIBILITY.get(category)
    if severity != Severity.SEV4 or specialist is None:
        wanted.append(Responsibility.ON_CALL)
    if specialist:
        wanted.append(specialist)
    if severity == Severity.SEV1 or (category == Category.API and severity == Severity.SEV2):
        wanted.append(Responsibility.DEVOPS)
    return list(dict.fromkeys(wanted))


def _page(incident: Incident, *, why: str, source: str, actor=None) -> None:
    from incidents.acknowledge import incident_url
    from incidents.escalation import escalation_on_paged

    # The escalation pages its team's on-call (again and further until someone
    # acknowledges); the one-off page covers the other teams the routing names.
    escalating = escalation_on_paged(incident=incident, source=source)
    subject = f"[{incident.severity_label}] {why}: {incident.title} (incident #{incident.pk})"
    body = (
        f"{incident.get_severity_display()}\nCategory: {incident.get_category_display()}\n"
        f"Status: {incident.get_status_display()}\n\nSymptoms:\n{incident.symptoms or '—'}"
        f"\n\nOpen the incident: {incident_url(incident)}"
    )
    teams = {
        t.responsibility: t
        for t in Team.objects.filter(
            responsibility__in=paging_responsibilities(
                severity=incident.severity, category=incident.category
            )
        )
    }
    for responsibility in paging_responsibilities(
        severity=incident.severity, category=incident.category
    ):
        if escalating is not None and escalating.responsibility == responsibility:
            continue
        label = Responsibility(responsibility).label
        notifications = notify(
            responsibility=responsibility,
            subject=subject,
            body=body,
            about=incident,
            links=[{"text": "Open the incident", "url": incident_url(incident)}],
        )
        if notifications:
            destinations = ", ".join(n.destination for n in notifications)
            message = f"Paged {label} ({teams[responsibility].name}): {destinations}"
        elif responsibility in teams:
            message = f"Could not page {label}: {teams[responsibility].name} has no address"
        else:
            message = f"Could not page {label}: no team answers for it"
        timeline_add(
            incident=incident,
            kind=TimelineKind.NOTIFICATION,
            message=message,
            actor=actor,
            source=source,
        )


# --- opening ----------------------------------------------------------------------------


def _resolve_systems(systems: Iterable) -> list[System]:
    """Systems given as instances, primary keys or names (alerts name them)."""
    found: list[System] = []
    names, ids = [], []
    for item in systems or ():
        if isinstance(item, System):
            found.append(item)
        elif isinstance(item, int):
            ids.append(item)
        elif item:
            names.append(str(item))
    if names or ids:
        from django.db.models import Q

        found += list(System.objects.filter(Q(name__in=names) | Q(pk__in=ids)))
    return list({s.pk: s for s in found}.values())


def _check_choice(value: str, choices, what: str) -> None:
    if value not in choices.values:
        raise IncidentRefused(
            f"Unknown {what} {value!r}; choose one of {', '.join(choices.values)}."
        )


def _opening_values(incident: Incident, systems: list[System]) -> dict[str, list]:
    """The incident's first values in the shape of the model change history ([old, new])."""
    values: dict[str, list] = {}
    for field in Incident._meta.concrete_fields:
        value = field.value_from_object(incident)
        if value not in (None, "") and field.name != "id":
            values[field.name] = [None, field.value_to_string(incident)]
    if systems:
        values["affected_systems"] = [None, sorted(s.name for s in systems)]
    return values


def incident_open(
    *,
    title: str,
    severity: str,
    category: str,
    team=None,
    reporter=None,
    symptoms: str = "",
    affected_systems=(),
    runbook_name: str | None = None,
    source: str = "person",
    alert_fingerprint: str = "",
) -> Incident:
    """Open an incident, page whoever the routing names, attach the named runbook."""
    title = title.strip()
    if not title:
        raise IncidentRefused("An incident needs a title.")
    _check_choice(severity, Severity, "severity")
    _check_choice(category, Category, "category")
    _check_choice(source, Source, "source")
    reporter = acting_user(reporter)
    if (
        team is not None
        and reporter is not None
        and not reporter.is_superuser
        and not team.members.filter(pk=reporter.pk).exists()
    ):
        raise IncidentRefused(
            f"{reporter.get_username()} is not a member of {team.name}, so cannot open an "
            "incident for it; choose one of your teams."
        )
    runbook = None
    if runbook_name:
        runbook = Runbook.objects.filter(name=runbook_name).first()
        if runbook is None:
            raise IncidentRefused(f"There is no runbook named {runbook_name!r}.")
    systems = _resolve_systems(affected_systems)
    with transaction.atomic():
        # bulk_create sends no post_save or m2m_changed, so the model change history
        # (audit_register in apps.py, which still records every later edit) does not add a
        # bare "created" record beside the "Opened" one below, which carries the same values
        # plus who opened it and why.
        (incident,) = Incident.objects.bulk_create(
            [
                Incident(
                    title=title[:200],
                    severity=severity,
                    category=category,
                    team=team,
                    reporter=reporter,
                    symptoms=symptoms,
                    source=source,
                    detected_at=timezone.now(),
                    alert_fingerprint=alert_fingerprint,
                )
            ]
        )
        if systems:
            Incident.affected_systems.through.objects.bulk_create(
                [
                    Incident.affected_systems.through(incident_id=incident.pk, system_id=s.pk)
                    for s in systems
                ]
            )
        who = reporter.get_username() if reporter else Source(source).label.lower()
        timeline_add(
            incident=incident,
            kind=TimelineKind.OPENED,
            message=f"Opened by {who}: {incident.get_severity_display()}, "
            f"{incident.get_category_display()}"
            + (f"; affects {', '.join(s.name for s in systems)}" if systems else ""),
            actor=reporter,
            source=source,
        )
        audit_record(
            action=AuditAction.CREATE,
            obj=incident,
            actor=reporter,
            message=f"Opened {incident.severity_label} incident: {title}"
            + (f" (from alert {alert_fingerprint})" if alert_fingerprint else ""),
            changes=_opening_values(incident, systems),
        )
        _page(incident, why="New incident", source=source, actor=reporter)
        if runbook:
            incident_attach_runbook(
                incident=incident, runbook=runbook, actor=reporter, source=source
            )
    return incident


# --- lifecycle --------------------------------------------------------------------------

# action -> (statuses it may start from, status it leads to, past tense for messages)
TRANSITIONS: dict[str, tuple[tuple[str, ...], str, str]] = {
    "acknowledge": ((Status.OPEN,), Status.ACKNOWLEDGED, "acknowledged"),
    "investigate": (
        (Status.OPEN, Status.ACKNOWLEDGED, Status.MITIGATED),
        Status.INVESTIGATING,
        "moved to investigating",
    ),
    "mitigate": ((Status.ACKNOWLEDGED, Status.INVESTIGATING), Status.MITIGATED, "mitigated"),
    "resolve": (ACTIVE_STATUSES, Status.RESOLVED, "resolved"),
    "close": ((Status.RESOLVED,), Status.CLOSED, "closed"),
    "reopen": ((Status.RESOLVED, Status.CLOSED), Status.OPEN, "reopened"),
}


def incident_allowed_actions(*, incident: Incident) -> list[str]:
    return [name for name, (origins, _, _) in TRANSITIONS.items() if incident.status in origins]


def _transition(
    incident: Incident,
    action: str,
    *,
    actor,
    source: str,
    note: str = "",
    by: str | None = None,
    **changes,
) -> Incident:
    origins, target, verb = TRANSITIONS[action]
    with transaction.atomic():
        locked = Incident.objects.select_for_update().get(pk=incident.pk)
        if locked.status not in origins:
            allowed = " or ".join(Status(s).label.lower() for s in origins)
            raise IncidentRefused(
                f"Incident #{locked.pk} is {locked.get_status_display().lower()}, so it cannot "
                f"be {verb}: only an incident that is {allowed} can."
            )
        now = timezone.now()
        before = locked.status
        locked.status = target
        stamp = {
            Status.ACKNOWLEDGED: "acknowledged_at",
            Status.MITIGATED: "mitigated_at",
            Status.RESOLVED: "resolved_at",
            Status.CLOSED: "closed_at",
        }.get(target)
        if stamp and getattr(locked, stamp) is None:
            setattr(locked, stamp, now)
        for field, value in changes.items():
            setattr(locked, field, value)
        if (
            action == "acknowledge"
            and locked.commander_id is None
            and acting_user(actor) is not None
        ):
            locked.commander = actor
        if action == "reopen":
            locked.resolved_at = locked.closed_at = None
        try:
            with transaction.atomic():
                locked.save()
        except IntegrityError as exc:
            raise IncidentRefused(
                f"Incident #{locked.pk} cannot be reopened: another incident for the same "
                "alert is already open; add to that one instead."
            ) from exc
        who = by or acting_name(actor, otherwise=Source(source).label.lower())
        message = f"{Status(before).label} → {Status(target).label} ({verb} by {who})"
        timeline_add(
            incident=locked,
            kind=TimelineKind.STATUS,
            message=message + (f": {note}" if note else ""),
            actor=actor,
            source=source,
        )
        _audit(locked, f"Incident {verb}" + (f": {note}" if note else ""), actor)
        if action in ("acknowledge", "resolve"):
            from incidents.escalation import escalation_on_answered

            escalation_on_answered(incident=locked, what=verb, by=who)
    incident.refresh_from_db()
    return incident


def incident_acknowledge(
    *, incident: Incident, actor, note: str = "", source: str = Source.PERSON, by: str | None = None
) -> Incident:
    """`by` names who acknowledged when no user is acting (a link sent to a contact)."""
    return _transition(incident, "acknowledge", actor=actor, source=source, note=note, by=by)


def incident_investigate(*, incident: Incident, actor, note: str = "") -> Incident:
    return _transition(incident, "investigate", actor=actor, source=Source.PERSON, note=note)


def incident_mitigate(*, incident: Incident, actor, note: str = "") -> Incident:
    return _transition(incident, "mitigate", actor=actor, source=Source.PERSON, note=note)


def incident_mark_mitigated(*, incident: Incident, actor, note: str = "") -> Incident:
    """ "Mark mitigated" offered once a runbook fix succeeded: the responder who ran the fix
    has taken the incident, so an incident still open is acknowledged first (a timeline
    entry of its own) and then mitigated, in one click."""
    with transaction.atomic():
        # Both steps or neither, on the status as it is now (not as the page saw it).
        incident = Incident.objects.select_for_update().get(pk=incident.pk)
        if incident.status == Status.OPEN:
            incident = incident_acknowledge(
                incident=incident, actor=actor, note="acknowledged by marking it mitigated"
            )
        return incident_mitigate(incident=incident, actor=actor, note=note)


def incident_resolve(
    *, incident: Incident, actor, resolution: str = "", source: str = Source.PERSON
) -> Incident:
    changes = {"resolution": resolution} if resolution else {}
    return _transition(incident, "resolve", actor=actor, source=source, note=resolution, **changes)


def incident_review_missing(*, incident: Incident) -> list[str]:
    """What the post-incident review still lacks (only SEV1/SEV2 need one to close)."""
    if incident.severity not in REVIEW_REQUIRED:
        return []
    missing = []
    if not incident.review_what_happened.strip():
        missing.append("what happened")
    if not incident.review_root_cause.strip():
        missing.append("the root cause")
    if not incident.action_items.exists():
        missing.append("at least one follow-up action item (owner and due date)")
    return missing


def incident_close(*, incident: Incident, actor, note: str = "") -> Incident:
    incident.refresh_from_db()
    missing = incident_review_missing(incident=incident)
    if missing:
        raise IncidentRefused(
            f"A {incident.severity_label} incident needs its post-incident review before it "
            f"can close; still missing: {', '.join(missing)}."
        )
    return _transition(incident, "close", actor=actor, source=Source.PERSON, note=note)


def incident_reopen(*, incident: Incident, actor, reason: str) -> Incident:
    if not reason.strip():
        raise IncidentRefused("Say why the incident is reopened.")
    return _transition(incident, "reopen", actor=actor, source=Source.PERSON, note=reason.strip())


_SEVERITY_RANK = {Severity.SEV1: 1, Severity.SEV2: 2, Severity.SEV3: 3, Severity.SEV4: 4}


def incident_escalate(
    *, incident: Incident, severity: str, actor, reason: str = "", source: str = Source.PERSON
) -> Incident:
    """Raise the severity and page whoever the new severity calls for."""
    _check_choice(severity, Severity, "severity")
    with transaction.atomic():
        locked = Incident.objects.select_for_update().get(pk=incident.pk)
        if not locked.is_active:
            raise IncidentRefused(
                f"Incident #{locked.pk} is {locked.get_status_display().lower()}; reopen it "
                "before escalating."
            )
        if _SEVERITY_RANK[severity] >= _SEVERITY_RANK[locked.severity]:
            raise IncidentRefused(
                f"Incident #{locked.pk} is already {locked.severity_label}; escalating means "
                "choosing a more severe level."
            )
        before = locked.severity_label
        locked.severity = severity
        locked.save(update_fields=["severity"])
        who = acting_name(actor, otherwise=Source(source).label.lower())
        timeline_add(
            incident=locked,
            kind=TimelineKind.STATUS,
            message=f"Escalated {before} → {locked.severity_label} by {who}"
            + (f": {reason}" if reason else ""),
            actor=actor,
            source=source,
        )
        _audit(locked, f"Escalated {before} → {locked.severity_label}: {reason}", actor)
        _page(locked, why="Escalated", source=source, actor=actor)
    incident.refresh_from_db()
    return incident


# --- runbooks and checklists ------------------------------------------------------------


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


def incident_step_run(
    *,
    step: IncidentStep,
    actor,
    target: System | None = None,
    params: dict | None = None,
    reason: str = "",
) -> Operation:
    """Request the step's operation for the incident. Refused unless the actor may run
    incident steps and this kind of operation (checked here as well as by the page)."""
    from opsportal.operations.services import OperationRefused, operation_request

    if not step.operation_kind:
        raise IncidentRefused(f"Step {step.text!r} is manual: mark it done with a note.")
    needed = step_run_permissions(step.operation_kind)
    if not (acting_user(actor) is not None and actor.has_perms(needed)):
        raise IncidentRefused(
            f"Running {step.operation_kind} needs the permissions "
            f"{' and '.join(needed)}; {actor or 'nobody'} does not hold them."
        )
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
                reason=reason or f"Incident #{step.incident_id}: {step.text}",
                incident=step.incident,
            )
        except OperationRefused as exc:
            raise IncidentRefused(exc.message) from exc
        IncidentStep.objects.filter(pk=step.pk).update(last_operation=operation, target=target)
        step.last_operation, step.target = operation, target
        timeline_add(
            incident=step.incident,
            kind=TimelineKind.OPERATION,
            message=f"Requested {operation.get_kind_display()} on {target} for step "
            f"{step.text!r} (operation #{operation.pk})",
            actor=actor,
            operation=operation,
        )
    return operation


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


# --- alerts -----------------------------------------------------------------------------


def alert_fingerprint(labels: dict) -> str:
    canonical = ",".join(f"{k}={labels[k]}" for k in sorted(labels))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def _suppressing_window(systems: list[System]):
    from maintenance.selectors import suppressing_window

    return suppressing_window(systems=systems, at=None)


def alert_receive(
    *,
    fingerprint: str,
    status: str,
    title: str,
    severity: str,
    category: str,
    systems=(),
    runbook_name: str | None = None,
    evidence: str = "",
    source: str = "alertmanager",
    auto_resolve: bool = False,
) -> Alert:
    """Record an alert; a firing one opens an incident (or joins the open one with the same
    fingerprint) unless a maintenance window suppresses it; a resolved one is recorded on
    the incident's timeline and resolves it when `auto_resolve`."""
    if status not in AlertStatus.values:
        raise IncidentRefused(f"Alert status must be firing or resolved, got {status!r}.")
    if not fingerprint:
        raise IncidentRefused("An alert needs a fingerprint.")
    _check_choice(severity, Severity, "severity")
    _check_choice(category, Category, "category")
    resolved_systems = _resolve_systems(systems)
    title = (title or "Alert").strip()[:300]
    with transaction.atomic():
        alert = Alert.objects.create(
            fingerprint=fingerprint[:128],
            status=status,
            title=title,
            severity=severity,
            category=category,
            source=source[:32],
            evidence=evidence,
        )
        if resolved_systems:
            alert.systems.set(resolved_systems)
        incident = open_incident_for_fingerprint(fingerprint=alert.fingerprint)
        if status == AlertStatus.FIRING:
            window = None if incident else _suppressing_window(resolved_systems)
            if window is not None:
                alert.suppressed_by = window
                alert.save(update_fields=["suppressed_by"])
                audit_record(
                    action=AuditAction.OPERATION,
                    obj=alert,
                    message=f"Alert {title!r} suppressed by maintenance window {window}",
                )
                return alert
            if incident is None:
                incident = _open_for_alert(alert, resolved_systems, runbook_name)
                message = f"Alert firing ({source}): {title}"
            else:
                message = f"Alert fired again ({source}): {title}"
            alert.incident = incident
            alert.save(update_fields=["incident"])
            timeline_add(
                incident=incident,
                kind=TimelineKind.ALERT,
                message=message,
                source=Source.ALERT,
                output=evidence,
            )
            if _SEVERITY_RANK[severity] < _SEVERITY_RANK[incident.severity]:
                incident_escalate(
                    incident=incident,
                    severity=severity,
                    actor=None,
                    reason=f"alert {title!r} fired at {Severity(severity).label.split()[0]}",
                    source=Source.ALERT,
                )
            return alert
        if incident is not None:
            alert.incident = incident
            alert.save(update_fields=["incident"])
            timeline_add(
                incident=incident,
                kind=TimelineKind.ALERT,
                message=f"Alert resolved ({source}): {title}",
                source=Source.ALERT,
                output=evidence,
            )
            if auto_resolve:
                incident_resolve(
                    incident=incident,
                    actor=None,
                    resolution=f"The alert {title!r} resolved.",
                    source=Source.ALERT,
                )
    return alert


def _open_for_alert(alert: Alert, systems: list[System], runbook_name: str | None) -> Incident:
    if runbook_name and not Runbook.objects.filter(name=runbook_name).exists():
        logger.warning("Alert %s names unknown runbook %r", alert.fingerprint, runbook_name)
        runbook_name = None
    try:
        with transaction.atomic():
            return incident_open(
                title=alert.title,
                severity=alert.severity,
                category=alert.category,
                symptoms=alert.evidence,
                affected_systems=systems,
                runbook_name=runbook_name,
                source=Source.ALERT,
                alert_fingerprint=alert.fingerprint,
            )
    except IntegrityError:
        # A concurrent delivery of the same alert opened it a moment ago: join that one.
        incident = open_incident_for_fingerprint(fingerprint=alert.fingerprint)
        if incident is None:
            raise
        return incident


# --- defaults ---------------------------------------------------------------------------

_API, _DB, _CONTAINER = "api", "database", "container"

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


def incident_durations(*, incident: Incident) -> dict[str, dt.timedelta | None]:
    return {
        "time_to_acknowledge": incident.time_to_acknowledge,
        "time_to_resolve": incident.time_to_resolve,
    }
