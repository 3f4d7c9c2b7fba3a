"""Figures over the rolling window, derived from the stored samples after each round."""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from typing import TYPE_CHECKING

from django.conf import settings
from django.db.models import Min

from opsportal.monitoring import collectors
from opsportal.monitoring.models import Sample
from opsportal.monitoring.services.samples import SeriesValues
from opsportal.systems.models import SystemKind

if TYPE_CHECKING:
    from opsportal.monitoring.services.collection import SystemCollection


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (what an operator can check by hand on the samples)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def _derived_values(collected: list[SystemCollection]) -> SeriesValues:
    """Figures over the rolling window, computed from the stored samples: API p50/p95 and
    error rate, and container restarts within the last five minutes."""
    derived: SeriesValues = {}
    at_of = {c.system.pk: c.at for c in collected if c.ok}
    window = dt.timedelta(seconds=settings.MONITORING_WINDOW_SECONDS)
    http_ids = [c.system.pk for c in collected if c.ok and c.system.kind == SystemKind.HTTP]
    if http_ids:
        latencies: dict[int, list[float]] = defaultdict(list)
        errors: dict[int, list[float]] = defaultdict(list)
        since = min(at_of[i] for i in http_ids) - window
        rows = Sample.objects.filter(
            system_id__in=http_ids, metric__in=("http_latency_ms", "http_error"), at__gt=since
        ).values_list("system_id", "metric", "value", "at")
        for system_id, metric, value, at in rows:
            if at <= at_of[system_id] - window:
                continue
            (latencies if metric == "http_latency_ms" else errors)[system_id].append(value)
        for system_id in http_ids:
            at = at_of[system_id]
            if latencies[system_id]:
                derived[(system_id, "http_latency_p50_ms", "")] = (
                    percentile(latencies[system_id], 0.50),
                    at,
                )
                derived[(system_id, "http_latency_p95_ms", "")] = (
                    percentile(latencies[system_id], 0.95),
                    at,
                )
            if errors[system_id]:
                rate = sum(errors[system_id]) / len(errors[system_id]) * 100
                derived[(system_id, "http_error_rate_percent", "")] = (round(rate, 3), at)
    docker_ids = [c.system.pk for c in collected if c.ok and c.system.kind == SystemKind.DOCKER]
    if docker_ids:
        since = min(at_of[i] for i in docker_ids) - collectors.RESTARTS_WINDOW
        oldest = {
            (row["system_id"], row["subject"]): row["lowest"]
            for row in Sample.objects.filter(
                system_id__in=docker_ids, metric="container_restart_count", at__gt=since
            )
            .values("system_id", "subject")
            .annotate(lowest=Min("value"))
        }
        for item in collected:
            if item.system.pk not in docker_ids:
                continue
            for r in item.readings:
                if r.metric == "container_restart_count":
                    # The lowest count sampled within the window, or the engine's own
                    # baseline (0 for a container created within it) when that is lower:
                    # restarts before monitoring's first sample are not lost. A manual
                    # restart resets the engine's count to 0, so the count alone would
                    # call a crash loop over the moment someone restarts it: the engine's
                    # start events within the window (window_count) still count those
                    # restarts. The larger figure wins, as the engine keeps only its last
                    # few hundred events.
                    lowest = oldest.get((item.system.pk, r.subject), r.value)
                    if r.baseline is not None:
                        lowest = min(lowest, r.baseline)
                    restarts = max(0.0, r.value - lowest, r.window_count or 0.0)
                    derived[(item.system.pk, "container_restarts_5m", r.subject)] = (
                        restarts,
                        item.at,
                    )
    return derived
