"""Reads of collected figures shared by the overview, the system pages and the benches."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from urllib.parse import urlencode

from django.db.models import Count, Exists, OuterRef, Value
from django.urls import reverse
from django.utils import timezone

from opsportal.monitoring.catalogue import KEY_METRICS, METRICS
from opsportal.monitoring.models import (
    COMPARE,
    AlertRule,
    AlertState,
    AlertStatus,
    Comparison,
    LatestValue,
    Sample,
)
from opsportal.people.models import Team
from opsportal.systems.models import System

CHART_WINDOW = dt.timedelta(hours=1)
CHART_POINTS = 60
OVERVIEW_MAX_SYSTEMS = 200


def series_recent(
    *, system_ids: list[int], metrics: list[str], since: dt.datetime, points: int = CHART_POINTS
) -> dict[tuple[int, str], list[tuple[dt.datetime, float]]]:
    """System-level series (no subject) since `since`, thinned to about `points` each. One
    query, served by the (system, metric, subject, at) index."""
    series: dict[tuple[int, str], list[tuple[dt.datetime, float]]] = defaultdict(list)
    if not system_ids or not metrics:
        return series
    rows = (
        Sample.objects.filter(
            system_id__in=system_ids, metric__in=metrics, subject="", at__gte=since
        )
        .order_by("system_id", "metric", "at")
        .values_list("system_id", "metric", "at", "value")
    )
    for system_id, metric, at, value in rows:
        series[(system_id, metric)].append((at, value))
    for key, values in series.items():
        if len(values) > points:
            step = len(values) / points
            series[key] = [values[int(i * step)] for i in range(points - 1)] + [values[-1]]
    return series


def latest_values(*, system_ids: list[int]) -> dict[tuple[int, str, str], LatestValue]:
    rows = LatestValue.objects.filter(system_id__in=system_ids)
    return {(r.system_id, r.metric, r.subject): r for r in rows}


@dataclass
class Figure:
    metric: str
    unit: str
    value: float | None
    points: list[tuple[dt.datetime, float]] = field(default_factory=list)
    at: dt.datetime | None = None  # when `value` was collected
    # The alert rule's line it crossed ("above 500 ms"), or "" within its target.
    beyond: str = ""
    # True when the system is down: the figure is its last value from before, not now.
    stale: bool = False

    @property
    def label(self) -> str:
        return self.metric.replace("_", " ")


@dataclass
class SystemStatus:
    system: System
    admin_url: str
    up: bool | None
    collected_at: dt.datetime | None
    figures: list[Figure]
    firing: int = 0
    maintenance: object | None = None
    containers: int | None = None


def system_figures(*, system: System, now: dt.datetime | None = None) -> list[Figure]:
    """The system page's small charts: each key figure of its kind over the last hour."""
    now = now or timezone.now()
    metrics = list(KEY_METRICS.get(system.kind, ()))
    latest = latest_values(system_ids=[system.pk])
    series = series_recent(system_ids=[system.pk], metrics=metrics, since=now - CHART_WINDOW)
    return [
        Figure(
            m,
            METRICS[m].unit,
            getattr(latest.get((system.pk, m, "")), "value", None),
            series.get((system.pk, m), []),
        )
        for m in metrics
    ]


@dataclass(frozen=True)
class MetricTarget:
    """One enabled alert rule's line on a metric: where a figure stops being on target."""

    comparison: str
    threshold: float
    system_kind: str  # "" for every kind
    system_ids: frozenset[int]  # empty for every system

    def crossed_by(self, *, value: float, system: System) -> bool:
        if self.system_kind and self.system_kind != system.kind:
            return False
        if self.system_ids and system.pk not in self.system_ids:
            return False
        return COMPARE[self.comparison](value, self.threshold)

    def label(self, unit: str) -> str:
        unit = "" if unit in ("1/0", "") else f" {unit}"
        return f"{Comparison(self.comparison).label} {self.threshold:g}{unit}"


def metric_targets() -> dict[str, list[MetricTarget]]:
    """The enabled alert rules' thresholds by metric, in one query (a rule limited to some
    systems comes back once per system and is folded together here)."""
    rows = AlertRule.objects.filter(enabled=True).values_list(
        "pk", "metric", "comparison", "threshold", "system_kind", "systems"
    )
    rules: dict[int, tuple[str, str, float, str, set[int]]] = {}
    for pk, metric, comparison, threshold, kind, system_id in rows:
        entry = rules.setdefault(pk, (metric, comparison, threshold, kind, set()))
        if system_id is not None:
            entry[4].add(system_id)
    targets: dict[str, list[MetricTarget]] = defaultdict(list)
    for metric, comparison, threshold, kind, system_ids in rules.values():
        targets[metric].append(MetricTarget(comparison, threshold, kind, frozenset(system_ids)))
    return targets


def _beyond(
    targets: dict[str, list[MetricTarget]], system: System, metric: str, value: float | None
) -> str:
    if value is None:
        return ""
    unit = METRICS[metric].unit
    crossed = [t for t in targets.get(metric, ()) if t.crossed_by(value=value, system=system)]
    return ", ".join(t.label(unit) for t in crossed)


def systems_status(*, now: dt.datetime | None = None) -> list[SystemStatus]:
    """Every system with its collection status, key figures (marked where beyond an alert
    rule's line, greyed where stale because the system is down) and sparklines: five
    queries however many systems and samples there are."""
    now = now or timezone.now()
    targets = metric_targets()
    systems = list(System.objects.order_by("name")[:OVERVIEW_MAX_SYSTEMS])
    ids = [s.pk for s in systems]
    latest = latest_values(system_ids=ids)
    metrics = sorted({m for ms in KEY_METRICS.values() for m in ms})
    series = series_recent(system_ids=ids, metrics=metrics, since=now - CHART_WINDOW)
    firing = dict(
        AlertState.objects.filter(status=AlertStatus.FIRING, system_id__in=ids)
        .values("system_id")
        .annotate(n=Count("pk"))
        .values_list("system_id", "n")
    )
    containers: dict[int, int] = defaultdict(int)
    for (system_id, metric, _subject), row in latest.items():
        if metric == "container_running" and row.value == 1.0:
            containers[system_id] += 1
    result = []
    for system in systems:
        up = latest.get((system.pk, "up", ""))
        down = up is not None and up.value != 1.0
        figures = []
        for m in KEY_METRICS.get(system.kind, ()):
            row = latest.get((system.pk, m, ""))
            value = row.value if row else None
            figures.append(
                Figure(
                    m,
                    METRICS[m].unit,
                    value,
                    series.get((system.pk, m), []),
                    at=row.at if row else None,
                    beyond=_beyond(targets, system, m, value),
                    # A down system's figures are the last ones collected before it went
                    # down: older than its newest "up" sample.
                    stale=down and row is not None and row.at < up.at,
                )
            )
        result.append(
            SystemStatus(
                system=system,
                admin_url=system.get_admin_url(),
                up=None if up is None else up.value == 1.0,
                collected_at=up.at if up else None,
                figures=figures,
                firing=firing.get(system.pk, 0),
                containers=containers.get(system.pk) if system.kind == "docker" else None,
            )
        )
    return result


def alerts_firing(*, limit: int = 20) -> list[AlertState]:
    return list(
        AlertState.objects.filter(status=AlertStatus.FIRING)
        .select_related("rule", "system")
        .order_by("-since")[:limit]
    )


OVERVIEW_MAX_INCIDENTS = 10


def operations_overview(*, now: dt.datetime | None = None, user=None) -> dict:
    """Everything the admin's home page shows, in a bounded number of queries."""
    now = now or timezone.now()
    from backups.selectors import backup_freshness
    from incidents.models import ACTIVE_STATUSES, Incident, Severity
    from incidents.selectors import next_operation_steps
    from maintenance.selectors import systems_in_maintenance, windows_upcoming
    from opsportal.people.selectors import on_call_overview

    # The user's teams' incidents first, then the newest: a long list stays readable, and
    # the rest are one link away (the incident list filtered to open ones).
    mine = (
        Exists(Team.objects.filter(pk=OuterRef("team_id"), members=user))
        if getattr(user, "pk", None)
        else Value(False)
    )
    open_incidents = list(
        Incident.objects.filter(status__in=ACTIVE_STATUSES)
        .select_related("team")
        .annotate(mine=mine)
        .order_by("-mine", "-detected_at", "-id")[:OVERVIEW_MAX_INCIDENTS]
    )
    counts = dict(
        Incident.objects.filter(status__in=ACTIVE_STATUSES)
        .values("severity")
        .annotate(n=Count("pk"))
        .values_list("severity", "n")
    )
    by_severity = [
        (value, label.split(" ")[0], counts.get(value, 0)) for value, label in Severity.choices
    ]
    systems = systems_status(now=now)
    in_maintenance = systems_in_maintenance(at=now)
    for status in systems:
        status.maintenance = in_maintenance.get(status.system.pk)
    upcoming = list(windows_upcoming(now=now)[:5])
    active_windows = [w for w in upcoming if w.starts_at <= now or w.status == "in_progress"]
    next_window = next((w for w in upcoming if w not in active_windows), None)
    freshness = {f.database: f for f in backup_freshness()}
    backups = [
        {
            "database": name,
            "last_success_at": f.last_success_at if f else None,
            "age": (now - f.last_success_at) if f and f.last_success_at else None,
            "planned": f is not None,
        }
        for name, f in (
            (s.system.name, freshness.get(s.system.name))
            for s in systems
            if s.system.kind == "postgres"
        )
    ]
    firing = alerts_firing()
    # Each firing alert links to its incident's runbook step, the alert's system and
    # container filled in (one query for every alert's incident).
    steps = next_operation_steps(incident_ids=[s.incident_id for s in firing if s.incident_id])
    for state in firing:
        step = steps.get(state.incident_id)
        state.run_step = step
        state.run_url = (
            reverse("admin:incidents_incident_step_run", args=[state.incident_id, step.pk])
            + "?"
            + urlencode({"target": state.system_id or "", "container": state.subject})
            if step is not None
            else ""
        )
    incidents_total = sum(counts.values())
    return {
        "now": now,
        "open_incidents": open_incidents,
        "incidents_more": max(incidents_total - len(open_incidents), 0),
        "incidents_open_url": reverse("admin:incidents_incident_changelist")
        + "?"
        + urlencode({"status__in": ",".join(ACTIVE_STATUSES)}),
        "incidents_by_severity": by_severity,
        "incidents_open_total": incidents_total,
        "incident_admin_url": reverse("admin:incidents_incident_changelist"),
        "alerts_firing": firing,
        "systems": systems,
        "active_windows": active_windows,
        "next_window": next_window,
        "backups": backups,
        "on_call": on_call_overview(at=now),
    }
