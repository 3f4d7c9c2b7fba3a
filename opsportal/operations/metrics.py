"""Gauges for Prometheus: operations waiting or running (a growing queue means no worker
is taking them) and open incidents by severity."""

from collections.abc import Iterable

from django.db.models import Count
from prometheus_client.core import GaugeMetricFamily, Metric

from opsportal.operations.models import ACTIVE_STATUSES, Operation


def operation_gauges() -> Iterable[Metric]:
    from incidents.models import ACTIVE_STATUSES as INCIDENT_ACTIVE
    from incidents.models import Incident, Severity

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
    incidents = GaugeMetricFamily(
        "opsportal_incidents_open",
        "Incidents not yet resolved, by severity.",
        labels=["severity"],
    )
    by_severity = dict(
        Incident.objects.filter(status__in=INCIDENT_ACTIVE)
        .values_list("severity")
        .annotate(n=Count("id"))
    )
    for severity in Severity.values:
        incidents.add_metric([severity], by_severity.get(severity, 0))
    yield from (active, incidents)
