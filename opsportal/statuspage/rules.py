"""How a component's state is derived from monitoring. RULES is shown on each component's
admin page, so an admin can read exactly what the code below does."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass

from django.db.models import Q

from opsportal.monitoring.models import AlertState, AlertStatus, LatestValue
from opsportal.statuspage.models import STATE_RANK, Component, ComponentState
from opsportal.systems.models import System, SystemKind

RULES = """\
1. An unresolved public incident that sets a state for its components wins (the worst, if
   several do).
2. Otherwise a public maintenance window in progress that lists the component: under
   maintenance.
3. Otherwise from each mapped system's latest figures (ignored when older than three
   collection intervals) and its alert states:
   - a system is down when its last collection failed (up = 0), when its container is not
     running (container_running = 0 for the container it is registered in), or, for an HTTP
     endpoint, when its last probe failed (http_error = 1);
   - every mapped system down: major outage; some down: partial outage;
   - none down but an alert rule firing on one of them (or on its container): degraded
     performance;
   - otherwise operational (also when no system is mapped or no figures are recent).
"""

DOWN_SIGNALS = (("up", 0.0), ("http_error", 1.0))


@dataclass
class Derived:
    state: str
    reason: str


def _fresh(value: LatestValue, now: dt.datetime, interval: int) -> bool:
    return (now - value.at).total_seconds() <= max(3 * interval, 90)


def derive_states(
    *,
    components: list[Component],
    now: dt.datetime,
    incident_states: dict[int, str],
    maintenance: set[int],
) -> dict[int, Derived]:
    """Each component's state and the (internal) reason, in a fixed number of queries."""
    systems: dict[int, System] = {}
    mapped: dict[int, list[int]] = {}
    for component in components:
        mapped[component.pk] = [s.pk for s in component.systems.all()]
        systems.update({s.pk: s for s in component.systems.all()})
    containers = {
        (s.docker_engine_id, s.container_name): s.pk
        for s in systems.values()
        if s.docker_engine_id and s.container_name
    }
    query = Q(system_id__in=list(systems), metric__in=["up", "http_error"], subject="")
    for engine_id, container in containers:
        query |= Q(system_id=engine_id, metric="container_running", subject=container)
    intervals = {
        s.pk: getattr(getattr(s, "collection", None), "interval_seconds", 30)
        for s in systems.values()
    }
    down: dict[int, list[str]] = defaultdict(list)
    if systems:
        for value in LatestValue.objects.filter(query):
            if value.metric == "container_running":
                system_id = containers[(value.system_id, value.subject)]
                if value.value == 0.0 and _fresh(value, now, intervals.get(system_id, 30)):
                    down[system_id].append(f"container {value.subject} not running")
                continue
            system = systems[value.system_id]
            if not _fresh(value, now, intervals.get(system.pk, 30)):
                continue
            if value.metric == "up" and value.value == 0.0:
                down[system.pk].append("last collection failed")
            elif (
                value.metric == "http_error"
                and system.kind == SystemKind.HTTP
                and value.value == 1.0
            ):
                down[system.pk].append("last probe failed")
    firing: dict[int, list[str]] = defaultdict(list)
    alert_query = Q(system_id__in=list(systems))
    for engine_id, container in containers:
        alert_query |= Q(system_id=engine_id, subject=container)
    if systems:
        for alert in AlertState.objects.filter(
            alert_query, status=AlertStatus.FIRING
        ).select_related("rule"):
            system_id = (
                alert.system_id
                if alert.system_id in systems and not alert.subject
                else containers.get((alert.system_id, alert.subject), alert.system_id)
            )
            firing[system_id].append(f"alert '{alert.rule.name}' firing")

    derived: dict[int, Derived] = {}
    for component in components:
        ids = mapped[component.pk]
        if component.pk in incident_states:
            derived[component.pk] = Derived(
                incident_states[component.pk], "set by an unresolved public incident"
            )
            continue
        if component.pk in maintenance:
            derived[component.pk] = Derived(
                ComponentState.MAINTENANCE, "a public maintenance window is in progress"
            )
            continue
        names = {s: systems[s].name for s in ids}
        down_ids = [s for s in ids if down.get(s)]
        reasons = [f"{names[s]}: {', '.join(down[s])}" for s in down_ids]
        if ids and len(down_ids) == len(ids):
            derived[component.pk] = Derived(ComponentState.MAJOR_OUTAGE, "; ".join(reasons))
        elif down_ids:
            derived[component.pk] = Derived(ComponentState.PARTIAL_OUTAGE, "; ".join(reasons))
        elif alerting := [s for s in ids if firing.get(s)]:
            derived[component.pk] = Derived(
                ComponentState.DEGRADED,
                "; ".join(f"{names[s]}: {', '.join(firing[s])}" for s in alerting),
            )
        else:
            derived[component.pk] = Derived(
                ComponentState.OPERATIONAL,
                "no system down and no alert firing" if ids else "no system mapped",
            )
    return derived


def worst(states: list[str]) -> str:
    return max(states, key=lambda s: STATE_RANK[s], default=ComponentState.OPERATIONAL)
