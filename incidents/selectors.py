"""Reads of incidents shared by the admin, services and benchmarks."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import QuerySet

from incidents.models import (
    ACTIVE_STATUSES,
    ActionItem,
    Alert,
    Incident,
    IncidentStep,
    Runbook,
    TimelineEvent,
)
from opsportal.operations.models import Evidence
from opsportal.systems.models import System


def open_incident_for_fingerprint(*, fingerprint: str) -> Incident | None:
    return (
        Incident.objects.filter(alert_fingerprint=fingerprint, status__in=ACTIVE_STATUSES)
        .order_by("-detected_at")
        .first()
    )


def incident_related_alerts(*, incident: Incident) -> list[Alert]:
    """The alerts that joined the incident as related (what runs on the unreachable host it
    is about), each fingerprint's newest, with their systems and host: two queries."""
    from django.db.models import OuterRef, Subquery

    newest = Alert.objects.filter(
        fingerprint=OuterRef("fingerprint"), incident=incident, related=True
    ).order_by("-received_at", "-id")
    return list(
        Alert.objects.filter(incident=incident, related=True)
        .filter(pk=Subquery(newest.values("pk")[:1]))
        .select_related("runs_on")
        .prefetch_related("systems")
        .order_by("title", "id")
    )


def incident_grouped(*, incident: Incident) -> list[Incident]:
    """The incidents folded into this one as part of its root cause."""
    return list(incident.grouped_incidents.order_by("id").only("id", "title", "status"))


def runbook_suggested(*, incident: Incident) -> Runbook | None:
    """The playbook for the incident's category (the runbook has one per common issue)."""
    return Runbook.objects.filter(category=incident.category).order_by("name").first()


def runbooks_with_suggestion(*, incident: Incident) -> tuple[list[Runbook], Runbook | None]:
    """Every runbook (by name, for the page's choice list) and the one suggested for the
    incident, as runbook_suggested chooses it, from the same single query."""
    runbooks = list(Runbook.objects.order_by("name"))
    suggested = next((r for r in runbooks if r.category == incident.category), None)
    return runbooks, suggested


def incidents_open_for_member(*, user, limit: int = 20) -> list[Incident]:
    """The newest active incidents of the user's teams (the changelist shows them first)."""
    return list(
        Incident.objects.filter(team__members=user, status__in=ACTIVE_STATUSES)
        .select_related("team", "commander")
        .order_by("-detected_at", "-id")[:limit]
    )


def alerts_suppressed() -> QuerySet[Alert]:
    """Alerts a maintenance window suppressed. Maintenance's window page lists a window's
    own (its read-only inline filters these by window) without reaching into
    incidents.models."""
    return Alert.objects.filter(suppressed_by__isnull=False)


def incident_timeline(*, incident: Incident) -> QuerySet[TimelineEvent]:
    return (
        # Not the operation: its row carries the full output again, which the event
        # already holds (bounded) in its own output.
        TimelineEvent.objects.filter(incident=incident).select_related("actor").order_by("at", "id")
    )


def incident_evidence(*, incident: Incident) -> list[Evidence]:
    """The artefacts preserved for the incident, with who captured each (the page lists
    them)."""
    return list(Evidence.objects.filter(incident=incident).select_related("captured_by"))


def incident_checklist(*, incident: Incident) -> QuerySet[IncidentStep]:
    return (
        IncidentStep.objects.filter(incident=incident)
        .select_related("target", "done_by", "last_operation")
        .order_by("position", "id")
    )


def next_operation_steps(*, incident_ids: list[int]) -> dict[int, IncidentStep]:
    """For each incident, the runbook step an operator runs next: its first step not yet
    done that changes a system (the fix), else its first one that runs an operation. One
    query for all of them (the overview's firing alerts link to these)."""
    if not incident_ids:
        return {}
    from opsportal.operations.kinds import KINDS

    chosen: dict[int, IncidentStep] = {}
    fallback: dict[int, IncidentStep] = {}
    steps = (
        IncidentStep.objects.filter(incident_id__in=incident_ids, done=False)
        .exclude(operation_kind="")
        .order_by("incident_id", "position", "id")
    )
    for step in steps:
        spec = KINDS.get(step.operation_kind)
        if spec is None:
            continue
        fallback.setdefault(step.incident_id, step)
        if spec.changing:
            chosen.setdefault(step.incident_id, step)
    return {pk: chosen.get(pk) or fallback[pk] for pk in fallback}


def step_run_prefill(
    *,
    incident: Incident,
    step: IncidentStep,
    targets: QuerySet[System],
    linked_system_id: int | None = None,
    linked_container: str = "",
) -> tuple[int | None, dict]:
    """The system (and container) a step's run page starts with, and its parameters: the
    system the link names (the overview's firing alerts link with one), else the step's
    own, else the one the incident's alert fired on. Only a system among `targets` (those
    the operation may act on) is chosen; the runbook's parameters are kept."""
    from opsportal.monitoring.models import AlertState
    from opsportal.operations.kinds import KINDS
    from opsportal.operations.selectors import operation_target_for_alert

    params = dict(step.operation_params or {})
    target_id = step.target_id
    system, subject = None, ""
    if linked_system_id is not None:
        system = System.objects.filter(pk=linked_system_id).first()
        subject = linked_container
    elif target_id is None and incident.alert_fingerprint:
        state = (
            AlertState.objects.filter(fingerprint=incident.alert_fingerprint)
            .select_related("system")
            .first()
        )
        if state is not None:
            system, subject = state.system, state.subject
    if system is not None:
        chosen = operation_target_for_alert(
            kind=step.operation_kind, system=system, subject=subject
        )
        if chosen.system is not None and targets.filter(pk=chosen.system.pk).exists():
            target_id = chosen.system.pk
            if chosen.container and "container" in KINDS[step.operation_kind].params:
                params["container"] = chosen.container
    return target_id, params


@dataclass
class PostmortemRecord:
    """Everything a post-incident review draft says, read in a fixed number of queries
    however long the timeline (six: the incident with its people, its systems, timeline,
    alerts, checklist and action items)."""

    incident: Incident
    affected_systems: list[str]
    timeline: list[TimelineEvent]
    alerts: list[Alert]
    steps: list[IncidentStep]
    action_items: list[ActionItem]


def incident_postmortem_record(*, incident_id: int) -> PostmortemRecord:
    incident = Incident.objects.select_related("team", "commander", "reporter", "runbook").get(
        pk=incident_id
    )
    return PostmortemRecord(
        incident=incident,
        affected_systems=list(
            incident.affected_systems.order_by("name").values_list("name", flat=True)
        ),
        # The events' own message and bounded output (the operation's output, masked when
        # it was stored); never the operation row, its parameters or structured result.
        timeline=list(incident_timeline(incident=incident)),
        # Not their evidence: the alert's raw payload stays in the admin.
        alerts=list(
            Alert.objects.filter(incident=incident)
            .only("received_at", "status", "title", "severity", "source", "incident_id")
            .order_by("received_at", "id")
        ),
        steps=list(
            IncidentStep.objects.filter(incident=incident)
            .select_related("target", "done_by")
            .order_by("position", "id")
        ),
        action_items=list(
            ActionItem.objects.filter(incident=incident)
            .select_related("owner")
            .order_by("due_date", "id")
        ),
    )
