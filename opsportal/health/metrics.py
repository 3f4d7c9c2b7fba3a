"""Prometheus export: django-prometheus' request/DB/cache metrics plus the portal's own
gauges, computed from the database at scrape time.

Apps add gauges with `register_gauges(func)`, where func yields metric families.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from opsportal.systems.models import System

GaugeSource = Callable[[], Iterable[Metric]]
_sources: list[GaugeSource] = []


def register_gauges(source: GaugeSource) -> GaugeSource:
    if source not in _sources:
        _sources.append(source)
    return source


class _PortalCollector:
    def collect(self) -> Iterable[Metric]:
        for source in _sources:
            yield from source()


_portal_registry = CollectorRegistry(auto_describe=False)
_portal_registry.register(_PortalCollector())


def _process_registry() -> CollectorRegistry:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Under several gunicorn workers each keeps its own counters in files there;
        # this collector sums them so any worker answers for all.
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return registry
    return REGISTRY


def render() -> bytes:
    return generate_latest(_process_registry()) + generate_latest(_portal_registry)


@register_gauges
def system_gauges() -> Iterable[Metric]:
    up = GaugeMetricFamily(
        "opsportal_system_up",
        "1 if the system's last connection check succeeded, 0 if it failed.",
        labels=["system", "kind"],
    )
    duration = GaugeMetricFamily(
        "opsportal_system_check_duration_seconds",
        "How long the system's last connection check took.",
        labels=["system", "kind"],
    )
    checked = GaugeMetricFamily(
        "opsportal_system_last_check_timestamp_seconds",
        "When the system was last checked (Unix time).",
        labels=["system", "kind"],
    )
    for name, kind, ok, ms, at in System.objects.exclude(last_checked_at=None).values_list(
        "name", "kind", "last_check_ok", "last_check_duration_ms", "last_checked_at"
    ):
        up.add_metric([name, kind], 1 if ok else 0)
        duration.add_metric([name, kind], (ms or 0) / 1000)
        checked.add_metric([name, kind], at.timestamp())
    yield from (up, duration, checked)
