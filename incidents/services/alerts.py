"""Alerts: receiving one (a firing alert opens an incident or joins the open one with the
same fingerprint, unless a maintenance window suppresses it; a resolved one is recorded and
may resolve the incident), and handing over the alerts a window held once it ends."""

from __future__ import annotations

import hashlib

from django.db import IntegrityError, transaction

from incidents.models import (
    Alert,
    AlertStatus,
    Category,
    Incident,
    Runbook,
    Severity,
    Source,
    TimelineKind,
)
from incidents.selectors import open_incident_for_fingerprint
from incidents.services._common import (
    _SEVERITY_RANK,
    IncidentRefused,
    _check_choice,
    _resolve_systems,
    logger,
    timeline_add,
)
from incidents.services.grouping import (
    alert_join_host,
    host_outage_alert,
    host_recovered_hand_over,
    incident_group_children,
    related_incident_for,
)
from incidents.services.lifecycle import incident_escalate, incident_open, incident_resolve
from opsportal.audit.models import AuditAction
from opsportal.audit.services import audit_record
from opsportal.systems.models import System


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
    outage_of=None,
    runs_on=None,
) -> Alert:
    """Record an alert; a firing one opens an incident (or joins the open one with the same
    fingerprint) unless a maintenance window suppresses it; a resolved one is recorded on
    the incident's timeline and resolves it when `auto_resolve`.

    `outage_of`: the system (or its id) this alert says is unreachable; `runs_on`: the host
    what it is about runs on (derived from the systems' Docker engine when not given). A
    child alert of an unreachable host joins the host's incident instead (see
    incidents.services.grouping)."""
    if status not in AlertStatus.values:
        raise IncidentRefused(f"Alert status must be firing or resolved, got {status!r}.")
    if not fingerprint:
        raise IncidentRefused("An alert needs a fingerprint.")
    _check_choice(severity, Severity, "severity")
    _check_choice(category, Category, "category")
    resolved_systems = _resolve_systems(systems)
    outage = _one_system(outage_of)
    host = _one_system(runs_on) or _host_of(resolved_systems, outage)
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
            outage_of=outage,
            runs_on=host,
        )
        if resolved_systems:
            alert.systems.set(resolved_systems)
        incident = open_incident_for_fingerprint(fingerprint=alert.fingerprint)
        if status == AlertStatus.FIRING:
            parent = host_outage_alert(host_id=host.pk) if host and not incident else None
            if parent is not None:
                return alert_join_host(alert=alert, parent=parent, host=host)
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
            if outage is not None:
                incident_group_children(incident=incident, host=outage)
            if _SEVERITY_RANK[severity] < _SEVERITY_RANK[incident.severity]:
                incident_escalate(
                    incident=incident,
                    severity=severity,
                    actor=None,
                    reason=f"alert {title!r} fired at {Severity(severity).label.split()[0]}",
                    source=Source.ALERT,
                )
            return alert
        if incident is None:
            related_to = related_incident_for(fingerprint=alert.fingerprint)
            if related_to is not None:
                alert.incident, alert.related = related_to, True
                alert.save(update_fields=["incident", "related"])
                timeline_add(
                    incident=related_to,
                    kind=TimelineKind.ALERT,
                    message=f"Related alert resolved ({source}): {title}",
                    source=Source.ALERT,
                    output=evidence,
                )
        if outage is not None:
            # The host answers again: what still fails on it is a fault of its own now.
            host_recovered_hand_over(incident=incident, host=outage)
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


def _one_system(value) -> System | None:
    if value is None or isinstance(value, System):
        return value
    return System.objects.filter(pk=value).first()


def _host_of(systems: list[System], outage: System | None) -> System | None:
    """The Docker engine the alerted systems run on (the first one that names one)."""
    for system in systems:
        if system.docker_engine_id and system.docker_engine_id != getattr(outage, "pk", None):
            return System.objects.filter(pk=system.docker_engine_id).first()
    return None


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


def alerts_release_held(*, window) -> list[int]:
    """Hand the alerts a maintenance window suppressed, and that are still firing, to incident
    handling: each fingerprint's latest alert is received anew (opening or joining an
    incident and paging), unless it resolved since or is no longer this window's (an
    incident took it, or another window). Returns the ids of the alerts received anew.

    Maintenance calls this once per window, when its suppression has ended (Alertmanager
    repeats a firing alert only after hours, so one that kept firing through the window
    would page nobody until then)."""
    released = []
    held = Alert.objects.filter(suppressed_by=window, status=AlertStatus.FIRING)
    fingerprints = set(held.values_list("fingerprint", flat=True))
    hosts = set(held.filter(outage_of__isnull=False).values_list("fingerprint", flat=True))
    # A host's alert first, so what runs on it joins the host's incident, not its own.
    for fingerprint in sorted(fingerprints, key=lambda f: (f not in hosts, f)):
        latest = (
            Alert.objects.filter(fingerprint=fingerprint).order_by("-received_at", "-id").first()
        )
        # Resolved since, or already handled (an incident, or another window): leave it.
        if latest.status != AlertStatus.FIRING or latest.suppressed_by_id != window.pk:
            continue
        again = alert_receive(
            fingerprint=latest.fingerprint,
            status=AlertStatus.FIRING,
            title=latest.title,
            severity=latest.severity,
            category=latest.category,
            systems=list(latest.systems.all()),
            evidence=latest.evidence,
            source=latest.source,
            outage_of=latest.outage_of_id,
            runs_on=latest.runs_on_id,
        )
        released.append(again.pk)
    return released
