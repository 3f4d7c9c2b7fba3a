"""What monitoring adds to /metrics and /health/detailed."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric

from opsportal.monitoring.catalogue import METRICS
from opsportal.monitoring.models import AlertState, AlertStatus, CollectionSchedule, LatestValue


def monitoring_gauges() -> Iterable[Metric]:
    """Every collected figure as a gauge, labelled by system (and container or path), from
    the latest-value table: one query however many samples are stored."""
    families: dict[str, GaugeMetricFamily] = {}
    rows = LatestValue.objects.values_list(
        "system__name", "system__kind", "metric", "subject", "value"
    ).order_by("metric", "system__name", "subject")
    for system, kind, metric, subject, value in rows:
        spec = METRICS.get(metric)
        if spec is None:
            continue
        family = families.get(metric)
        if family is None:
            labels = ["system", "kind"] + ([spec.subject] if spec.subject else [])
            family = families[metric] = GaugeMetricFamily(
                spec.prometheus_name, spec.help, labels=labels
            )
        label_values = [system or "portal", kind or "portal"]
        if spec.subject:
            label_values.append(subject)
        family.add_metric(label_values, value * spec.export_scale)
    yield from families.values()
    alerts = GaugeMetricFamily(
        "opsportal_alerts_firing",
        "Alert rules firing now, by rule and severity.",
        labels=["rule", "severity"],
    )
    counts: dict[tuple[str, str], int] = {}
    for name, severity in AlertState.objects.filter(status=AlertStatus.FIRING).values_list(
        "rule__name", "rule__severity"
    ):
        counts[(name, severity)] = counts.get((name, severity), 0) + 1
    for (name, severity), count in sorted(counts.items()):
        alerts.add_metric([name, severity], count)
    yield alerts


def collector_checks() -> list[tuple[str, bool, Callable[[], str]]]:
    """A /health/detailed check that the collector keeps up: no enabled system's last
    collection is older than three of its intervals."""
    now = timezone.now()
    late = []
    total = 0
    for name, interval, finished in CollectionSchedule.objects.filter(enabled=True).values_list(
        "system__name", "interval_seconds", "last_finished_at"
    ):
        total += 1
        if finished is None or (now - finished).total_seconds() > 3 * interval:
            late.append(name)

    def check() -> str:
        if late:
            raise RuntimeError(
                f"Metrics of {len(late)} of {total} systems are stale: {', '.join(late[:10])}"
            )
        return f"metrics of {total} systems are current"

    return [("monitoring:collection", False, check)]
