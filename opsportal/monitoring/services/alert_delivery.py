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
from opsportal.monitoring.models import AlertState, AlertStatus, LatestValue
from opsportal.systems.adapters import docker_engine
from opsportal.systems.adapters.errors import AdapterError
from opsportal.systems.models import DockerEngine, System, SystemKind

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


def alert_outage_of(state: AlertState) -> System | None:
    """The system this alert says is unreachable (a system-level `up` rule)."""
    if state.system_id is not None and state.rule.metric == "up" and not state.subject:
        return state.system
    return None


def alert_host_id(state: AlertState) -> int | None:
    """The Docker engine what this alert is about runs on: the engine of a container-level
    alert, or the engine a database, cache or endpoint runs in a container of."""
    if state.system_id is None:
        return None
    if state.system.kind == SystemKind.DOCKER:
        return state.system_id if state.subject else None
    return state.system.docker_engine_id


# How long a child alert waits for its unreachable host's alert to fire (the host's `up`
# rule has a for-duration; the child's may have none): past this it is sent on its own.
HOLD_FOR_HOST_SECONDS = 180


def _host_unreachable(host_id: int) -> bool:
    latest = LatestValue.objects.filter(key=LatestValue.key_for(host_id, "up", "")).first()
    if latest is not None and latest.value == 0:
        return True
    # Its last collection answered, maybe before it died: ask it now (bounded by its timeout).
    engine = DockerEngine.objects.filter(pk=host_id).first()
    if engine is None:
        return False
    try:
        docker_engine.ping(engine)
    except AdapterError:
        return True
    return False


def _wait_for_host(state: AlertState, host_id: int, now: dt.datetime) -> bool:
    """A child firing while its host does not answer and the host's own alert has not fired
    yet (still pending): wait for it (a later round delivers), so the child joins the host's
    incident instead of paging on its own."""
    if (now - state.since).total_seconds() > HOLD_FOR_HOST_SECONDS:
        return False
    host_alerts = AlertState.objects.filter(
        system_id=host_id, subject="", rule__metric="up", rule__enabled=True
    )
    if host_alerts.filter(status=AlertStatus.FIRING).exists():
        # Fired: deliver the child once the host's alert is delivered, so it finds it.
        return host_alerts.filter(status=AlertStatus.FIRING, delivered=False).exists()
    pending = host_alerts.filter(status=AlertStatus.PENDING).exists()
    return pending or _host_unreachable(host_id)


def _delivery_order(state: AlertState) -> int:
    """Hosts' outage alerts first, so the alerts about what runs on them find them."""
    return 0 if alert_outage_of(state) is not None else 1


def _evidence_text(state: AlertState) -> str:
    rule = state.rule
    lines = [f"Rule: {rule.name} ({rule.condition})"]
    where = state.system.name if state.system_id else "portal"
    subject = f" [{state.subject}]" if state.subject else ""
    lines.append(f"Series: {rule.metric} on {where}{subject}")
    lines.append("Samples that crossed the line (portal time, value):")
    lines += [f"  {at}  {value:g}" for at, value in state.evidence if value is not None]
    return "\n".join(lines)


def _deliver(state: AlertState, change: str, *, first: bool = False) -> None:
    """Hand a firing/resolved change to incidents; if that fails, the next round retries.
    A child whose host is unreachable waits (undelivered) for the host's alert."""
    rule = state.rule
    where = state.system.name if state.system_id else "portal"
    title = f"{rule.name} on {where}" + (f" ({state.subject})" if state.subject else "")
    host_id = alert_host_id(state)
    if change == "firing" and host_id and _wait_for_host(state, host_id, timezone.now()):
        if first:
            audit_record(
                action=AuditAction.OPERATION,
                obj=rule,
                outcome=AuditOutcome.SUCCESS,
                message=f"Alert firing: {title}, held while its host does not answer, to "
                "join the host's incident",
            )
        return
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
            outage_of=alert_outage_of(state),
            runs_on=host_id,
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
    for state in sorted(pending, key=_delivery_order):
        change = "firing" if state.status == AlertStatus.FIRING else "resolved"
        _deliver(state, change)
        count += 1
    return count
