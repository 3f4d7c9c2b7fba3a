"""Gauges for Prometheus: operations waiting or running (a growing queue means no worker
is taking them). Incident handling adds its own (open incidents by severity)."""

from collections.abc import Iterable

from django.db.models import Count
from prometheus_client.core import GaugeMetricFamily, Metric

from opsportal.operations.models import ACTIVE_STATUSES, Operation


def operation_gauges() -> Iterable[Metric]:
    active = GaugeMetricFamily(
        "opsportal_operations_active",
        "Operations on real systems queued or running, by status.",
        labels=["status"],
    )
    counts = dict(
        Operation.objects.filter(status__in=ACTIVE_STATUSES)
        .values_list("status")
        .annotate(n=Count("id"))
    )
    for status in ACTIVE_STATUSES:
        active.add_metric([str(status)], counts.get(status, 0))
    yield active
