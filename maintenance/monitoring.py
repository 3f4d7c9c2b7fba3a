"""What /health/detailed and /metrics say about maintenance: which systems are in a window."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client.core import GaugeMetricFamily, Metric

from maintenance.selectors import systems_in_maintenance
from opsportal.systems.models import System


def _names(in_maintenance) -> dict[int, str]:
    return dict(System.objects.filter(pk__in=list(in_maintenance)).values_list("pk", "name"))


def health_checks() -> list[tuple[str, bool, Callable[[], str]]]:
    """One informational (never critical) check naming the systems in maintenance now."""
    in_maintenance = systems_in_maintenance()
    names = _names(in_maintenance)
    by_window: dict[str, list[str]] = {}
    for system_id, window in in_maintenance.items():
        by_window.setdefault(window.title, []).append(names.get(system_id, str(system_id)))
    message = (
        "In maintenance now: "
        + "; ".join(f"{', '.join(sorted(s))} ({title})" for title, s in sorted(by_window.items()))
        if by_window
        else "No system is in maintenance."
    )

    def check() -> str:
        # Computed above, in the request thread: checks in the pool never touch the database.
        return message

    return [("maintenance", False, check)]


def gauges() -> Iterable[Metric]:
    in_maintenance = systems_in_maintenance()
    names = _names(in_maintenance)
    per_system = GaugeMetricFamily(
        "opsportal_system_in_maintenance",
        "1 for each system covered by a maintenance window in progress (alerts suppressed).",
        labels=["system", "window"],
    )
    for system_id, window in sorted(in_maintenance.items()):
        per_system.add_metric([names.get(system_id, str(system_id)), window.title], 1)
    windows = GaugeMetricFamily(
        "opsportal_maintenance_windows_in_progress",
        "How many maintenance windows are in progress.",
    )
    windows.add_metric([], len({w.pk for w in in_maintenance.values()}))
    yield per_system
    yield windows
