"""Reads of incidents shared by the admin, services and benchmarks."""

from __future__ import annotations

from django.db.models import QuerySet

from incidents.models import ACTIVE_STATUSES, Incident, IncidentStep, Runbook, TimelineEvent


def open_incident_for_fingerprint(*, fingerprint: str) -> Incident | None:
    return (
        Incident.objects.filter(alert_fingerprint=fingerprint, status__in=ACTIVE_STATUSES)
        .order_by("-detected_at")
        .first()
    )


def runbook_suggested(*, incident: Incident) -> Runbook | None:
    """The playbook for the incident's category (the runbook has one per common issue)."""
    return Runbook.objects.filter(category=incident.category).order_by("name").first()


def incident_timeline(*, incident: Incident) -> QuerySet[TimelineEvent]:
    return (
        # Not the operation: its row carries the full output again, which the event
        # already holds (bounded) in its own output.
        TimelineEvent.objects.filter(incident=incident).select_related("actor").order_by("at", "id")
    )


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
