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


def alerts_release_held(*, window) -> list[int]:
    """Hand the alerts a maintenance window suppressed, and that are still firing, to incident
    handling: each fingerprint's latest alert is received anew (opening or joining an
    incident and paging), unless it resolved since or is no longer this window's (an
    incident took it, or another window). Returns the ids of the alerts received anew.

    Maintenance calls this once per window, when its suppression has ended (Alertmanager
    repeats a firing alert only after hours, so one that kept firing through the window
    would page nobody until then)."""
    released = []
    fingerprints = set(
        Alert.objects.filter(suppressed_by=window, status=AlertStatus.FIRING).values_list(
            "fingerprint", flat=True
        )
    )
    for fingerprint in sorted(fingerprints):
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
        )
        released.append(again.pk)
    return released
