"""The overview's maintenance panel: windows in progress, the next one, and which systems
are in maintenance now (shown beside their status)."""

from __future__ import annotations

import datetime as dt

from maintenance.selectors import systems_in_maintenance, windows_upcoming


def overview_maintenance(*, now: dt.datetime, user, systems, firing) -> dict:
    in_maintenance = systems_in_maintenance(at=now)
    for status in systems:
        status.maintenance = in_maintenance.get(status.system.pk)
    upcoming = list(windows_upcoming(now=now)[:5])
    active_windows = [w for w in upcoming if w.starts_at <= now or w.status == "in_progress"]
    next_window = next((w for w in upcoming if w not in active_windows), None)
    return {"active_windows": active_windows, "next_window": next_window}
