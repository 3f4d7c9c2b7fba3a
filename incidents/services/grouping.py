"""One page per root cause: when a host (a Docker engine) is unreachable, the alerts about
the containers and systems that run on it join the host's incident as related alerts instead
of opening incidents of their own and paging again; when the host's alert resolves, those
still firing are handed over as incidents of their own (they are real faults now).

The rules, in the order alerts may arrive:
- Host first: a child alert (`runs_on` the host) finds the host's latest outage alert firing
  with an active incident, and joins that incident as a related alert: nobody is paged, the
  incident's timeline says so. If the host's alert is held by a maintenance window, the
  child is held by the same window (and released after it, once the host's alert is).
- Child first: when the host's outage alert opens (or joins) an incident, every active
  incident opened by a firing child of that host is resolved as "grouped under #N" and its
  alert joins #N. A child incident that already paged keeps the pages it sent (they cannot be
  taken back); resolving it stops its escalation and tells those paged that it was grouped
  under #N, where the host's incident pages its single round.
- Host recovers: children whose latest alert still fires are received anew, now without a
  parent, so each opens (or joins) its own incident and pages; held children are received
  anew too (their own maintenance window, if any, still applies).
- Children recover first: their resolved alert lands on the host's incident timeline and
  resolves nothing.
"""

from __future__ import annotations

from django.db.models import OuterRef, Subquery

from incidents.models import ACTIVE_STATUSES, Alert, AlertStatus, Incident, Source, TimelineKind
from incidents.services._common import timeline_add
from opsportal.audit.models import AuditAction
from opsportal.audit.services import audit_record
from opsportal.systems.models import System


def _latest_per_fingerprint(alerts):
    """Only the alerts that are the newest of their fingerprint."""
    newest = Alert.objects.filter(fingerprint=OuterRef("fingerprint")).order_by(
        "-received_at", "-id"
    )
    return alerts.filter(pk=Subquery(newest.values("pk")[:1]))


def host_outage_alert(*, host_id: int) -> Alert | None:
    """The host's outage alert that its children group under: its newest outage alert, if
    that is firing and has an active incident or is held by a maintenance window."""
    latest = (
        Alert.objects.filter(outage_of_id=host_id)
        .select_related("incident", "suppressed_by")
        .order_by("-received_at", "-id")
        .first()
    )
    if latest is None or latest.status != AlertStatus.FIRING:
        return None
    if latest.incident is not None and latest.incident.status in ACTIVE_STATUSES:
        return latest
    if latest.suppressed_by_id is not None:
        return latest
    return None


def alert_join_host(*, alert: Alert, parent: Alert, host: System) -> Alert:
    """A firing child alert arrives while its host's alert fires: join the host's incident
    (or be held by the window that holds the host's alert). Pages nobody."""
    if parent.incident is None:
        alert.suppressed_by_id = parent.suppressed_by_id
        alert.save(update_fields=["suppressed_by"])
        audit_record(
            action=AuditAction.OPERATION,
            obj=alert,
            message=f"Alert {alert.title!r} held with its host {host.name}'s alert, which "
            f"maintenance window {parent.suppressed_by} suppresses",
        )
        return alert
    incident = parent.incident
    alert.incident, alert.related = incident, True
    alert.save(update_fields=["incident", "related"])
    timeline_add(
        incident=incident,
        kind=TimelineKind.ALERT,
        message=f"Related alert ({alert.source}): {alert.title} — runs on {host.name}, "
        "which this incident is about; nobody paged for it",
        source=Source.ALERT,
        output=alert.evidence,
    )
    audit_record(
        action=AuditAction.OPERATION,
        obj=incident,
        message=f"Alert {alert.title!r} joined incident #{incident.pk} as a related alert "
        f"(runs on {host.name})",
    )
    return alert


def incident_group_children(*, incident: Incident, host: System) -> list[int]:
    """The host's outage alert opened or joined `incident`: fold into it the active incidents
    opened by firing alerts about what runs on the host (resolved as "grouped under #N"; their
    alert joins `incident` as a related alert). Returns the ids of the incidents grouped."""
    from incidents.services.lifecycle import _transition

    children = (
        _latest_per_fingerprint(
            Alert.objects.filter(
                runs_on=host, status=AlertStatus.FIRING, incident__status__in=ACTIVE_STATUSES
            )
        )
        .exclude(incident=incident)
        .select_related("incident")
    )
    grouped: list[int] = []
    for child in children:
        own = child.incident
        if own.alert_fingerprint != child.fingerprint:
            continue  # joined someone else's incident; not this child's own to fold
        paged = own.timeline.filter(kind=TimelineKind.NOTIFICATION).exists()
        note = (
            f"Grouped under #{incident.pk}: {host.name}, which {child.title!r} runs on, is "
            "unreachable"
            + (
                "; the pages already sent for this incident stand, its escalation stops"
                if paged
                else ""
            )
        )
        _transition(
            own,
            "resolve",
            actor=None,
            source=Source.ALERT,
            note=note,
            by=f"grouping under #{incident.pk}",
            resolution=note,
            grouped_under=incident,
        )
        Alert.objects.filter(pk=child.pk).update(incident=incident, related=True)
        timeline_add(
            incident=incident,
            kind=TimelineKind.ALERT,
            message=f"Grouped #{own.pk} under this incident: its alert {child.title!r} runs on "
            f"{host.name}" + (" (it had already paged)" if paged else ""),
            source=Source.ALERT,
        )
        audit_record(
            action=AuditAction.OPERATION,
            obj=own,
            message=f"Incident #{own.pk} grouped under #{incident.pk} ({host.name} unreachable)",
        )
        grouped.append(own.pk)
    return grouped


def host_recovered_hand_over(*, incident: Incident | None, host: System) -> list[Alert]:
    """The host's outage alert resolved: every child whose newest alert still fires under the
    host (related on its incident, or held with it) is received anew as its own alert, which
    opens its own incident and pages. Returns the alerts received anew."""
    from incidents.services.alerts import alert_receive

    still_firing = _latest_per_fingerprint(
        Alert.objects.filter(runs_on=host, status=AlertStatus.FIRING)
    ).filter(related=True) | _latest_per_fingerprint(
        Alert.objects.filter(
            runs_on=host,
            status=AlertStatus.FIRING,
            incident__isnull=True,
            suppressed_by__isnull=False,
        )
    )
    handed: list[Alert] = []
    for child in still_firing.order_by("fingerprint").prefetch_related("systems"):
        if child.related and incident is not None and child.incident_id != incident.pk:
            continue  # related to another incident of the host (an older outage)
        again = alert_receive(
            fingerprint=child.fingerprint,
            status=AlertStatus.FIRING,
            title=child.title,
            severity=child.severity,
            category=child.category,
            systems=list(child.systems.all()),
            evidence=child.evidence,
            source=child.source,
            runs_on=host,
        )
        if incident is not None:
            where = (
                f"its own incident #{again.incident_id}"
                if again.incident_id
                else "a maintenance window, which holds it"
            )
            timeline_add(
                incident=incident,
                kind=TimelineKind.ALERT,
                message=f"{host.name} answers again; {child.title!r} still fires and is "
                f"handed over to {where}",
                source=Source.ALERT,
            )
        audit_record(
            action=AuditAction.OPERATION,
            obj=again,
            message=f"Alert {child.title!r} handed over after {host.name} recovered"
            + (f" (incident #{again.incident_id})" if again.incident_id else " (held)"),
        )
        handed.append(again)
    return handed


def related_incident_for(*, fingerprint: str) -> Incident | None:
    """The active incident a child alert joined as related (for its resolved alert)."""
    latest = (
        Alert.objects.filter(fingerprint=fingerprint, status=AlertStatus.FIRING)
        .select_related("incident")
        .order_by("-received_at", "-id")
        .first()
    )
    if latest and latest.related and latest.incident and latest.incident.is_active:
        return latest.incident
    return None
