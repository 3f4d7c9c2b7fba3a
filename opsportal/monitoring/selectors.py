"""Reads of collected figures shared by the overview, the system pages and the benches."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from django.core.cache import cache
from django.db.models import Count, Q
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


def thinned(values: list[float], points: int = CHART_POINTS) -> list[float]:
    """About `points` of a series' n values, evenly spread: the values floor(i * n / points)
    for i < points - 1, and the last one. A short series is kept whole."""
    n = len(values)
    if n <= points:
        return values
    return [values[i * n // points] for i in range(points - 1)] + [values[-1]]


def series_recent(
    *, system_ids: list[int], metrics: list[str], since: dt.datetime, points: int = CHART_POINTS
) -> dict[tuple[int, str], list[float]]:
    """System-level series (no subject) since `since`, oldest first, thinned to about
    `points` values each. One query, served by the (system, metric, subject, at) index.

    Values only: a sparkline spaces its points evenly, and reading a timestamp per sample
    cost the overview most of its time (Django parses each timestamptz in Python: 24,000
    of them for 200 systems' hour took ~100 ms a view)."""
    series: dict[tuple[int, str], list[float]] = defaultdict(list)
    if not system_ids or not metrics:
        return series
    rows = (
        Sample.objects.filter(
            system_id__in=system_ids, metric__in=metrics, subject="", at__gte=since
        )
        .order_by("system_id", "metric", "at")
        .values_list("system_id", "metric", "value")
    )
    for system_id, metric, value in rows:
        series[(system_id, metric)].append(value)
    for key, values in series.items():
        series[key] = thinned(values, points)
    return series


# When a round of samples was last stored (set by samples_store once it is committed).
SAMPLES_STORED_CACHE_KEY = "monitoring:samples-stored"
# How long the overview's sparklines, read once, serve other views of the same round.
OVERVIEW_SERIES_FRESH_SECONDS = 60
OVERVIEW_METRICS = sorted({m for ms in KEY_METRICS.values() for m in ms})


def overview_series_outdate() -> None:
    try:
        cache.set(SAMPLES_STORED_CACHE_KEY, time.time_ns(), timeout=None)
    except Exception:
        # The sparklines then lag until they are a minute old (see overview_series); the
        # round itself is stored and must not fail for the cache.
        logger.warning("Could not mark the overview's sparklines outdated", exc_info=True)


def overview_series(
    *, system_ids: list[int], metrics: list[str], now: dt.datetime, reread: bool = False
) -> dict[tuple[int, str], list[float]]:
    """series_recent for the overview, read once per stored round and shared by every view
    and every web process through the cache: 200 systems' hour is the overview's largest
    read, and it only changes when a round is stored (or, slowly, as the hour moves on: a
    read serves for a minute at most). The worker that stores a round's last share reads
    them right away (overview_series_refresh), so views find them read. Without a record
    of the last round (a cache that is not shared, or flushed), or with the cache
    unreachable, every view reads them itself."""
    since = now - CHART_WINDOW
    try:
        stored = cache.get(SAMPLES_STORED_CACHE_KEY)
    except Exception:
        logger.warning("The cache is unreachable: the overview reads its sparklines", exc_info=True)
        stored = None
    if stored is None:
        return series_recent(system_ids=system_ids, metrics=metrics, since=since)
    which = hashlib.blake2b(repr((system_ids, metrics)).encode(), digest_size=12).hexdigest()
    key = f"monitoring:overview-series:{which}"
    entry = None
    if not reread:
        with contextlib.suppress(Exception):
            entry = cache.get(key)
    if entry is not None:
        read_for, read_at, series = entry
        age = now.timestamp() - read_at
        # A little slack below zero: the worker that read them may be a host whose clock
        # is ahead of this one's.
        if read_for == stored and -5 <= age < OVERVIEW_SERIES_FRESH_SECONDS:
            return series
    series = dict(series_recent(system_ids=system_ids, metrics=metrics, since=since))
    with contextlib.suppress(Exception):
        cache.set(key, (stored, now.timestamp(), series), timeout=OVERVIEW_SERIES_FRESH_SECONDS * 5)
    return series


def overview_systems() -> list[System]:
    return list(System.objects.order_by("name", "pk")[:OVERVIEW_MAX_SYSTEMS])


def overview_series_refresh(sender=None, **kwargs) -> None:
    """After a round's last share is stored (collection_finished, in the worker): read the
    overview's sparklines once, so that no view waits for them."""
    try:
        ids = [system.pk for system in overview_systems()]
        overview_series(system_ids=ids, metrics=OVERVIEW_METRICS, now=timezone.now(), reread=True)
    except Exception:
        logger.exception("Reading the overview's sparklines after a round failed")


@dataclass(frozen=True)
class Latest:
    value: float
    at: dt.datetime


def latest_values(
    *, system_ids: list[int], metrics: list[str], counted: tuple[str, ...] = ()
) -> dict[tuple[int, str, str], Latest]:
    """The newest value of the systems' system-level `metrics` (no subject), and of every
    subject of the `counted` metrics (a Docker engine's containers)."""
    rows = LatestValue.objects.filter(
        Q(subject="", metric__in=metrics) | Q(metric__in=counted), system_id__in=system_ids
    ).values_list("system_id", "metric", "subject", "value", "at")
    return {
        (system_id, metric, subject): Latest(value, at)
        for system_id, metric, subject, value, at in rows
    }


@dataclass
class Figure:
    metric: str
    unit: str
    value: float | None
    values: list[float] = field(default_factory=list)  # the last hour's, for its sparkline
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
    latest = latest_values(system_ids=[system.pk], metrics=metrics)
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


def _key_figures(
    system: System,
    latest: dict[tuple[int, str, str], Latest],
    targets: dict[str, list[MetricTarget]],
    series: dict[tuple[int, str], list[float]],
) -> list[Figure]:
    """The system's key figures: each marked where beyond an alert rule's line, and stale
    where the system is down (the last value collected before it went down)."""
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
                # Older than the newest "up" sample: collected before the system went down.
                stale=down and row is not None and row.at < up.at,
            )
        )
    return figures


@dataclass(frozen=True)
class SystemReading:
    """A system's newest collection: whether it answered, when, and its key figures."""

    up: bool | None  # None: never collected
    collected_at: dt.datetime | None
    figures: list[Figure]


def systems_readings(*, systems: list[System]) -> dict[int, SystemReading]:
    """Each system's newest collection with its key figures as the overview shows them,
    without the sparklines (the API's systems): two queries however many systems."""
    targets = metric_targets()
    latest = latest_values(system_ids=[s.pk for s in systems], metrics=["up", *OVERVIEW_METRICS])
    readings = {}
    for system in systems:
        up = latest.get((system.pk, "up", ""))
        readings[system.pk] = SystemReading(
            up=None if up is None else up.value == 1.0,
            collected_at=up.at if up else None,
            figures=_key_figures(system, latest, targets, {}),
        )
    return readings


def systems_status(*, now: dt.datetime | None = None) -> list[SystemStatus]:
    """Every system with its collection status, key figures (marked where beyond an alert
    rule's line, greyed where stale because the system is down) and sparklines: five
    queries however many systems and samples there are."""
    now = now or timezone.now()
    targets = metric_targets()
    systems = overview_systems()
    ids = [s.pk for s in systems]
    latest = latest_values(
        system_ids=ids, metrics=["up", *OVERVIEW_METRICS], counted=("container_running",)
    )
    series = overview_series(system_ids=ids, metrics=OVERVIEW_METRICS, now=now)
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
                figures=_key_figures(system, latest, targets, series),
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
