"""Reads of collected figures shared by the overview, the system pages and the benches."""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from django.db.models import Count, F, Q, Window
from django.db.models.functions import RowNumber
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
from opsportal.systems.models import System

logger = logging.getLogger(__name__)

CHART_WINDOW = dt.timedelta(hours=1)
CHART_POINTS = 60
OVERVIEW_MAX_SYSTEMS = 200


def series_recent(
    *, system_ids: list[int], metrics: list[str], since: dt.datetime, points: int = CHART_POINTS
) -> dict[tuple[int, str], list[tuple[dt.datetime, float]]]:
    """System-level series (no subject) since `since`, thinned to about `points` each. One
    query, served by the (system, metric, subject, at) index.

    The thinning happens in the database: of a series' n samples (0-based row r) it keeps
    the rows floor(i * n / points) for i < points - 1, and the last one. An hour at 30 s is
    120 samples a series; reading them all into Python for 60 shown cost the overview most
    of its CPU (a timestamp object per sample)."""
    series: dict[tuple[int, str], list[tuple[dt.datetime, float]]] = defaultdict(list)
    if not system_ids or not metrics:
        return series
    partition = [F("system_id"), F("metric")]
    row = Window(RowNumber(), partition_by=partition, order_by=F("at").asc()) - 1
    count = Window(Count("pk"), partition_by=partition)
    # r is floor(i * n / points) for some i when ceil(r * points / n) * n < (r + 1) * points.
    first_i = (F("row") * points + F("count") - 1) / F("count")
    rows = (
        Sample.objects.filter(
            system_id__in=system_ids, metric__in=metrics, subject="", at__gte=since
        )
        .annotate(row=row, count=count)
        .annotate(first_i=first_i)
        .annotate(first_at=F("first_i") * F("count"))
        .filter(
            Q(count__lte=points)
            | Q(row=F("count") - 1)
            | Q(first_i__lte=points - 2, first_at__lt=(F("row") + 1) * points)
        )
        .order_by("system_id", "metric", "at")
        .values_list("system_id", "metric", "at", "value")
    )
    for system_id, metric, at, value in rows:
        series[(system_id, metric)].append((at, value))
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


# The overview's domain panels (incidents, maintenance, backups): each domain app registers
# a function from its AppConfig.ready() that adds its keys to the page's context and may
# annotate the systems and firing alerts; the shared layer imports none of them.
OverviewSection = Callable[..., dict]
_overview_sections: dict[str, OverviewSection] = {}


def overview_section_register(name: str, section: OverviewSection) -> None:
    """`section(now=, user=, systems=, firing=)` returns the context keys it adds."""
    _overview_sections[name] = section


def operations_overview(*, now: dt.datetime | None = None, user=None) -> dict:
    """Everything the admin's home page shows, in a bounded number of queries.

    Each panel is computed on its own: one that fails (a bad row, a bug) is named in
    `failed_panels` and shown empty, and the page still renders for everyone."""
    from opsportal.people.selectors import on_call_overview

    now = now or timezone.now()
    failed: list[str] = []
    systems = _panel("Systems", failed, lambda: systems_status(now=now), [])
    firing = _panel("Alerts firing", failed, alerts_firing, [])
    context = {
        "now": now,
        "alerts_firing": firing,
        "systems": systems,
        "on_call": _panel("On call now", failed, lambda: on_call_overview(at=now), []),
        "failed_panels": failed,
    }
    for name, section in _overview_sections.items():
        context.update(
            _panel(
                name,
                failed,
                lambda section=section: section(now=now, user=user, systems=systems, firing=firing),
                {},
            )
        )
    if not systems and "Systems" not in failed:
        context["getting_started"] = _panel(
            "Getting started", failed, lambda: getting_started(user=user), []
        )
    return context


def _panel(name: str, failed: list[str], compute: Callable, empty):
    try:
        return compute()
    except Exception:
        # Logged with its traceback for the developers; the page says which panel is missing.
        logger.exception("The overview's %s panel failed", name)
        failed.append(name)
        return empty


@dataclass(frozen=True)
class FirstStep:
    """One step of setting up a fresh portal, for the home page's "Getting started"."""

    text: str
    why: str
    done: bool
    url: str | None  # None when this user may not do it (ask an administrator)


def getting_started(*, user=None) -> list[FirstStep]:
    """What a fresh portal needs before its home page has anything to show: the systems to
    watch and someone on call, each with a link for a user allowed to add it."""
    from django.urls import reverse

    from opsportal.people.models import OnCallRotation
    from opsportal.systems.models import DockerEngine, HttpEndpoint, PostgresDatabase

    def link(model, permission: str) -> str | None:
        if user is None or not user.has_perm(permission):
            return None
        return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_add")

    return [
        FirstStep(
            "Register a Docker engine",
            "the engine that runs the platform's containers (unix socket, tcp+TLS or ssh); "
            "its containers are then watched and can be restarted from a runbook",
            DockerEngine.objects.exists(),
            link(DockerEngine, "systems.add_dockerengine"),
        ),
        FirstStep(
            "Register a PostgreSQL database",
            "connections, slow queries and replication lag are watched, and it can be "
            "backed up and restored",
            PostgresDatabase.objects.exists(),
            link(PostgresDatabase, "systems.add_postgresdatabase"),
        ),
        FirstStep(
            "Register an HTTP endpoint",
            "the API's health URL: availability and p95 latency against its target",
            HttpEndpoint.objects.exists(),
            link(HttpEndpoint, "systems.add_httpendpoint"),
        ),
        FirstStep(
            "Say who is on call",
            "a rotation with its members, so an incident pages a person",
            OnCallRotation.objects.filter(members__isnull=False).exists(),
            link(OnCallRotation, "people.add_oncallrotation"),
        ),
    ]
