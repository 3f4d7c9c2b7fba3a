"""Maintenance on the public status page: the windows marked public (as the status page's
source, plugged in from MaintenanceConfig.ready()) and their announcements to the status
page's email subscribers, written from the public fields only."""

from __future__ import annotations

import datetime as dt

from django.db.models import Q

from maintenance.models import AnnouncementKind, MaintenanceWindow, WindowStatus
from opsportal.statuspage import sources
from opsportal.statuspage.services import status_refresh_soon, subscribers_notify

PUBLIC_STATUS = {
    WindowStatus.PLANNED: "scheduled",
    WindowStatus.ANNOUNCED: "scheduled",
    WindowStatus.IN_PROGRESS: "in_progress",
    WindowStatus.COMPLETED: "completed",
    WindowStatus.ROLLED_BACK: "completed",
    WindowStatus.CANCELLED: "cancelled",
}


def public_title(window: MaintenanceWindow) -> str:
    return window.public_title or "Scheduled maintenance"


def _record(window: MaintenanceWindow) -> sources.PublicWindow:
    return sources.PublicWindow(
        id=window.pk,
        title=public_title(window),
        starts_at=window.starts_at,
        ends_at=window.ends_at,
        status=PUBLIC_STATUS[window.status],
        impact=window.public_impact,
        component_ids=tuple(c.pk for c in window.public_components.all()),
        updated_at=window.finished_at or window.started_at or window.created_at,
        sequence=window.sequence,
    )


class MaintenancePublicSource:
    def windows(self, *, start: dt.datetime, end: dt.datetime) -> list[sources.PublicWindow]:
        rows = (
            MaintenanceWindow.objects.filter(public=True, starts_at__lt=end)
            .filter(Q(ends_at__gt=start) | Q(status=WindowStatus.IN_PROGRESS))
            .prefetch_related("public_components")
            .only(
                "id",
                "public_title",
                "public_impact",
                "starts_at",
                "ends_at",
                "status",
                "started_at",
                "finished_at",
                "created_at",
                "sequence",
            )
        )
        return [_record(w) for w in rows]


def _when(window: MaintenanceWindow) -> str:
    return (
        f"{window.starts_at.astimezone(dt.UTC):%Y-%m-%d %H:%M} to "
        f"{window.ends_at.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC"
    )


def _body(window: MaintenanceWindow, first_line: str) -> str:
    components = ", ".join(c.name for c in window.public_components.all()) or "not stated"
    lines = [first_line, "", f"When: {_when(window)}", f"Affected: {components}"]
    if window.public_impact:
        lines.append(f"What you may notice: {window.public_impact}")
    return "\n".join(lines)


def public_window_announce(*, window: MaintenanceWindow, kind: str, lead_hours: int = 0) -> int:
    """Tell the status page's subscribers what the teams were just told (lead time, start,
    completion, cancellation), for a public window only."""
    status_refresh_soon()
    if not window.public:
        return 0
    title = public_title(window)
    subject, first = {
        AnnouncementKind.LEAD: (
            f"Planned maintenance: {title}",
            f"Planned maintenance in about {lead_hours} hours: {title}."
            if lead_hours
            else f"Planned maintenance: {title}.",
        ),
        AnnouncementKind.START: (f"Maintenance started: {title}", f"Maintenance started: {title}."),
        AnnouncementKind.COMPLETION: (
            f"Maintenance ended: {title}",
            f"Maintenance ended: {title}. Everything should work as usual again.",
        ),
        AnnouncementKind.CANCELLATION: (
            f"Maintenance cancelled: {title}",
            f"The planned maintenance {title} was cancelled.",
        ),
    }[kind]
    return subscribers_notify(
        component_ids=[c.pk for c in window.public_components.all()],
        subject=subject,
        body=_body(window, first),
        about=window,
    )


def public_window_moved(*, window: MaintenanceWindow) -> int:
    """A public window got new times."""
    status_refresh_soon()
    if not window.public:
        return 0
    title = public_title(window)
    return subscribers_notify(
        component_ids=[c.pk for c in window.public_components.all()],
        subject=f"Maintenance moved: {title}",
        body=_body(window, f"The planned maintenance {title} was moved to new times."),
        about=window,
    )
