"""Reads other apps (incidents, monitoring, health) and the admin share."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from django.db.models import Q, QuerySet
from django.utils import timezone

from maintenance.models import (
    FINISHED_STATUSES,
    MaintenanceWindow,
    OccurrenceStatus,
    TaskOccurrence,
    WindowStatus,
)
from opsportal.systems.models import System


def _system_ids(systems: Iterable[System | int]) -> list[int]:
    return [s if isinstance(s, int) else s.pk for s in systems]


def suppressing_window(
    *, systems: Iterable[System | int], at: dt.datetime | None = None
) -> MaintenanceWindow | None:
    """The in-progress window covering any of these systems at `at` (default now), or None.

    An alert about one of these systems at `at` opens no incident and pages nobody; it is
    recorded as suppressed by the returned window.
    """
    at = at or timezone.now()
    ids = _system_ids(systems)
    if not ids:
        return None
    return (
        MaintenanceWindow.objects.filter(
            suppress_from__lte=at, suppress_until__gt=at, systems__in=ids
        )
        .order_by("suppress_from", "pk")
        .first()
    )


def systems_in_maintenance(*, at: dt.datetime | None = None) -> dict[int, MaintenanceWindow]:
    """System id -> the in-progress window covering it at `at` (default now).

    One query over the partial index on (suppress_until, suppress_from): only started
    windows are in it, so the answer stays cheap however many windows are stored.
    """
    at = at or timezone.now()
    through = MaintenanceWindow.systems.through
    rows = (
        through.objects.filter(
            maintenancewindow__suppress_from__lte=at, maintenancewindow__suppress_until__gt=at
        )
        .select_related("maintenancewindow")
        .order_by("-maintenancewindow__suppress_from")
    )
    return {row.system_id: row.maintenancewindow for row in rows}


def windows_upcoming(*, now: dt.datetime | None = None) -> QuerySet[MaintenanceWindow]:
    """Windows not finished yet and not over, soonest first (for the feed and the admin)."""
    now = now or timezone.now()
    return (
        MaintenanceWindow.objects.exclude(status__in=FINISHED_STATUSES)
        .filter(ends_at__gt=now)
        .prefetch_related("systems")
        .order_by("starts_at")
    )


def windows_for_feed(*, now: dt.datetime | None = None) -> QuerySet[MaintenanceWindow]:
    """The .ics feed: upcoming windows, and the cancelled ones that would still have been
    upcoming, so subscribed calendars learn of the cancellation and remove the event."""
    now = now or timezone.now()
    return (
        MaintenanceWindow.objects.exclude(
            status__in=[s for s in FINISHED_STATUSES if s != WindowStatus.CANCELLED]
        )
        .filter(ends_at__gt=now)
        .prefetch_related("systems")
        .order_by("starts_at")
    )


def windows_for_calendar(
    *, start: dt.datetime, end: dt.datetime, include_cancelled: bool = False
) -> QuerySet[MaintenanceWindow]:
    windows = MaintenanceWindow.objects.filter(starts_at__lt=end, ends_at__gt=start)
    if not include_cancelled:
        windows = windows.exclude(status=WindowStatus.CANCELLED)
    return windows.prefetch_related("systems").order_by("starts_at")


def windows_overlapping(*, window: MaintenanceWindow, system_ids: Iterable[int] | None = None):
    """Other live windows overlapping this one in time on at least one of the same systems."""
    ids = list(system_ids) if system_ids is not None else _system_ids(window.systems.all())
    if not ids:
        return MaintenanceWindow.objects.none()
    return (
        MaintenanceWindow.objects.filter(
            starts_at__lt=window.ends_at, ends_at__gt=window.starts_at, systems__in=ids
        )
        .exclude(pk=window.pk)
        .exclude(status=WindowStatus.CANCELLED)
        .distinct()
        .order_by("starts_at")
    )


def occurrences_overdue(
    *, now: dt.datetime | None = None, repeat_after: dt.timedelta = dt.timedelta(days=1)
) -> QuerySet[TaskOccurrence]:
    """Open occurrences past their due date whose owner was not reminded recently."""
    now = now or timezone.now()
    return (
        TaskOccurrence.objects.filter(status=OccurrenceStatus.OPEN, due_at__lt=now)
        .filter(Q(reminded_at__isnull=True) | Q(reminded_at__lt=now - repeat_after))
        .select_related("task", "task__team")
        .order_by("due_at")
    )
