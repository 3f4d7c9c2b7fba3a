"""Handing a firing or resolved alert to whoever subscribed (incidents), and sending again
what was not taken."""

from __future__ import annotations

import datetime as dt
import logging

from django.db.models import Q
from django.utils import timezone

from opsportal.audit.models import AuditAction, AuditOutcome
from opsportal.audit.services import audit_record
from opsportal.monitoring.handoff import alert_hand_off
from opsportal.monitoring.models import AlertState, AlertStatus
from opsportal.systems.models import System, SystemKind

logger = logging.getLogger(__name__)


def _alert_systems(state: AlertState) -> list[System]:
    if state.system_id is None:
        return []
    systems = [state.system]
    if state.subject and state.system.kind == SystemKind.DOCKER:
        # The database or cache that runs in this container is affected too (and its
        # maintenance window suppresses the alert).
        systems += list(
            System.objects.filter(docker_engine_id=state.system_id, container_name=state.subject)
        )
    return systems


def _evidence_text(state: AlertState) -> str:
    rule = state.rule
    lines = [f"Rule: {rule.name} ({rule.condition})"]
    where = state.system.name if state.system_id else "portal"
    subject = f" [{state.subject}]" if state.subject else ""
    lines.append(f"Series: {rule.metric} on {where}{subject}")
    lines.append("Samples that crossed the line (portal time, value):")
    lines += [f"  {at}  {value:g}" for at, value in state.evidence if value is not None]
    return "\n".join(lines)


def _deliver(state: AlertState, change: str) -> None:
    """Hand a firing/resolved change to incidents; if that fails, the next round retries."""
    rule = state.rule
    where = state.system.name if state.system_id else "portal"
    title = f"{rule.name} on {where}" + (f" ({state.subject})" if state.subject else "")
    try:
        alert = alert_hand_off(
            fingerprint=state.fingerprint,
            status=change,
            title=title[:200],
            severity=rule.severity,
            category=rule.category,
            systems=_alert_systems(state),
            runbook_name=rule.runbook_name or None,
            evidence=_evidence_text(state),
            source="rule",
            auto_resolve=rule.auto_resolve,
        )
    except Exception:
        logger.exception("Incidents did not take alert %s (%s); retrying next round", title, change)
        return
    incident_id = getattr(alert, "incident_id", None)
    now = timezone.now()
    AlertState.objects.filter(pk=state.pk).update(
        delivered=True, delivered_at=now, incident_id=incident_id or state.incident_id
    )
    state.delivered, state.delivered_at = True, now
    state.incident_id = incident_id or state.incident_id
    audit_record(
        action=AuditAction.OPERATION,
        obj=rule,
        outcome=AuditOutcome.SUCCESS,
        message=(
            f"Alert {change}: {title} (last value {state.last_value:g})"
            if state.last_value is not None
            else f"Alert {change}: {title}"
        ),
    )


# A firing alert that opened no incident (a maintenance window suppressed it) is sent again
# this often, so an incident opens once the window is over and the fault is still there.
RESEND_SUPPRESSED_SECONDS = 300


def alerts_redeliver(
    *, exclude: set[int] = frozenset(), now: dt.datetime | None = None, only: Q | None = None
) -> int:
    """Send again what incidents did not take, and firing alerts that opened no incident
    (held back by a maintenance window) and are still failing: one whose condition already
    cleared and that only waits out its hold time is not sent again, or the end of a window
    would page for a fault that is gone."""
    now = now or timezone.now()
    resend_before = now - dt.timedelta(seconds=RESEND_SUPPRESSED_SECONDS)
    pending = (
        AlertState.objects.filter(
            Q(delivered=False)
            | Q(
                status=AlertStatus.FIRING,
                incident_id__isnull=True,
                delivered_at__lt=resend_before,
                clearing_since__isnull=True,
            )
        )
        .exclude(pk__in=exclude)
        .select_related("rule", "system")
    )
    if only is not None:
        pending = pending.filter(only)
    count = 0
    for state in pending:
        change = "firing" if state.status == AlertStatus.FIRING else "resolved"
        _deliver(state, change)
        count += 1
    return count
