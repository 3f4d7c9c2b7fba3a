"""Paging: who the runbook's contact list says to page for an incident, and the
notifications sent (each one, or why nobody could be paged, lands on the timeline)."""

from __future__ import annotations

from incidents.models import Category, Incident, Severity, TimelineKind
from incidents.services._common import timeline_add
from incidents.services.acknowledge import incident_url
from incidents.services.escalation import escalation_on_paged
from opsportal.people.models import Responsibility, Team
from opsportal.people.services import notify

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
    # The escalation pages its team's on-call (again and further until someone
    # acknowledges, with Acknowledge links); this one-off page covers the other teams the
    # routing names.
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
