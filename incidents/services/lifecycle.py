"""An incident's life: opening it (by a person or for an alert), notes, the status
transitions (acknowledge, investigate, mitigate, resolve, close, reopen), the post-incident
review a SEV1/SEV2 needs before it closes, and escalation.

Each writes a timeline event and an audit record; an illegal request raises
IncidentRefused with a message for the operator.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from django.db import IntegrityError, transaction
from django.utils import timezone

from incidents.models import (
    ACTIVE_STATUSES,
    REVIEW_REQUIRED,
    Category,
    Incident,
    IncidentStep,
    Runbook,
    Severity,
    Source,
    Status,
    TimelineEvent,
    TimelineKind,
)
from incidents.services._common import (
    _SEVERITY_RANK,
    IncidentRefused,
    _audit,
    _check_choice,
    _resolve_systems,
    timeline_add,
)
from incidents.services.escalation import escalation_on_answered
from incidents.services.paging import _page
from incidents.services.runbooks import runbook_attach_on_opening
from opsportal.actors import acting_name, acting_user, actor_require
from opsportal.audit.models import AuditAction
from opsportal.audit.services import audit_record
from opsportal.operations.kinds import KINDS
from opsportal.systems.models import System


def incident_add_note(
    *, incident: Incident, actor, text: str, source: str = Source.PERSON
) -> TimelineEvent:
    actor_require(actor, "incidents.change_incident", doing="add a note to an incident")
    text = text.strip()
    if not text:
        raise IncidentRefused("A note needs some text.")
    event = timeline_add(
        incident=incident, kind=TimelineKind.NOTE, message=text, actor=actor, source=source
    )
    _audit(incident, f"Note added: {text[:200]}", actor)
    return event


# --- opening ----------------------------------------------------------------------------


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
    actor_require(reporter, "incidents.add_incident", doing="open an incident")
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
            runbook_attach_on_opening(
                incident=incident, runbook=runbook, actor=reporter, source=source
            )
    return incident


# --- transitions ------------------------------------------------------------------------

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
    actor_require(actor, "incidents.manage_incident", doing=f"{action} an incident")
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
            # Nobody else is paged, and those paged so far hear who answered.
            escalation_on_answered(incident=locked, what=verb, by=who)
    incident.refresh_from_db()
    return incident


def incident_acknowledge(
    *, incident: Incident, actor, note: str = "", source: str = Source.PERSON, by: str | None = None
) -> Incident:
    """`by` names who acknowledged when no user may be acting (a link sent to a contact)."""
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


# "Mark mitigated" is offered on an incident not yet mitigated (an open one is acknowledged
# on the way, incident_mark_mitigated) once a checklist step that changes a system succeeded.
MARK_MITIGATED_FROM = (Status.OPEN, Status.ACKNOWLEDGED, Status.INVESTIGATING)


def incident_mark_mitigated_step(
    *, incident: Incident, steps: Iterable[IncidentStep], actor
) -> IncidentStep | None:
    """The checklist step whose successful fix offers `actor` "Mark mitigated" on the
    incident page, or None: only to someone who may manage incidents, only while the
    incident is not yet mitigated. `steps` is the checklist the page already loaded (with
    each step's last operation), so this makes no query of its own."""
    if incident.status not in MARK_MITIGATED_FROM or not actor.has_perm(
        "incidents.manage_incident"
    ):
        return None
    return next(
        (
            step
            for step in steps
            if step.last_operation is not None
            and step.last_operation.status == "succeeded"
            and KINDS.get(step.last_operation.kind) is not None
            and KINDS[step.last_operation.kind].changing
        ),
        None,
    )


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


def incident_transition(*, incident: Incident, action: str, actor, note: str = "") -> Incident:
    """One of the incident page's status buttons (an action of TRANSITIONS) with the note
    typed beside it: the note is the resolution when resolving, the reason when reopening."""
    if action == "acknowledge":
        return incident_acknowledge(incident=incident, actor=actor, note=note)
    if action == "investigate":
        return incident_investigate(incident=incident, actor=actor, note=note)
    if action == "mitigate":
        return incident_mitigate(incident=incident, actor=actor, note=note)
    if action == "resolve":
        return incident_resolve(incident=incident, actor=actor, resolution=note)
    if action == "close":
        return incident_close(incident=incident, actor=actor, note=note)
    if action == "reopen":
        return incident_reopen(incident=incident, actor=actor, reason=note)
    raise IncidentRefused(f"There is no incident action {action!r}.")


# --- escalation -------------------------------------------------------------------------


def incident_escalate(
    *, incident: Incident, severity: str, actor, reason: str = "", source: str = Source.PERSON
) -> Incident:
    """Raise the severity and page whoever the new severity calls for."""
    actor_require(actor, "incidents.manage_incident", doing="escalate an incident")
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


def incident_durations(*, incident: Incident) -> dict[str, dt.timedelta | None]:
    return {
        "time_to_acknowledge": incident.time_to_acknowledge,
        "time_to_resolve": incident.time_to_resolve,
    }
