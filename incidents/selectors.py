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
