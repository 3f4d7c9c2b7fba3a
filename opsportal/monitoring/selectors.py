"""Reads of collected figures shared by the overview, the system pages and the benches."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field

from django.db.models import Count
from django.urls import reverse
from django.utils import timezone

from opsportal.monitoring.catalogue import KEY_METRICS, METRICS
from opsportal.monitoring.models import AlertState, AlertStatus, LatestValue, Sample
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


def systems_status(*, now: dt.datetime | None = None) -> list[SystemStatus]:
    """Every system with its collection status, key figures and sparklines: four queries
    however many systems and samples there are."""
    now = now or timezone.now()
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
        result.append(
            SystemStatus(
                system=system,
                admin_url=system.get_admin_url(),
                up=None if up is None else up.value == 1.0,
                collected_at=up.at if up else None,
                figures=[
                    Figure(
                        m,
                        METRICS[m].unit,
                        getattr(latest.get((system.pk, m, "")), "value", None),
                        series.get((system.pk, m), []),
                    )
                    for m in KEY_METRICS.get(system.kind, ())
                ],
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


def operations_overview(*, now: dt.datetime | None = None) -> dict:
    """Everything the admin's home page shows, in a bounded number of queries."""
    now = now or timezone.now()
    from backups.selectors import backup_freshness
    from incidents.models import ACTIVE_STATUSES, Incident, Severity
    from maintenance.selectors import systems_in_maintenance, windows_upcoming
    from opsportal.people.selectors import on_call_overview

    open_incidents = list(
        Incident.objects.filter(status__in=ACTIVE_STATUSES).order_by("severity", "-detected_at")[
            :15
        ]
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
    return {
        "now": now,
        "open_incidents": open_incidents,
        "incidents_by_severity": by_severity,
        "incidents_open_total": sum(counts.values()),
        "incident_admin_url": reverse("admin:incidents_incident_changelist"),
        "alerts_firing": alerts_firing(),
        "systems": systems,
        "active_windows": active_windows,
        "next_window": next_window,
        "backups": backups,
        "on_call": on_call_overview(at=now),
    }
