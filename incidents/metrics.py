"""Prometheus gauges of incident handling: open incidents by severity."""

from collections.abc import Iterable

from django.db.models import Count
from prometheus_client.core import GaugeMetricFamily, Metric

from incidents.models import ACTIVE_STATUSES, Incident, Severity


def incident_gauges() -> Iterable[Metric]:
    incidents = GaugeMetricFamily(
        "opsportal_incidents_open",
        "Incidents not yet resolved, by severity.",
        labels=["severity"],
    )
    by_severity = dict(
        Incident.objects.filter(status__in=ACTIVE_STATUSES)
        .values_list("severity")
        .annotate(n=Count("id"))
    )
    for severity in Severity.values:
        incidents.add_metric([severity], by_severity.get(severity, 0))
    yield incidents
