"""The iCalendar (RFC 5545) feed of upcoming maintenance windows."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import icalendar
from django.utils import timezone

from maintenance.models import MaintenanceWindow, WindowStatus

PRODID = "-//OpsPortal//Maintenance windows//EN"


def window_uid(window: MaintenanceWindow, domain: str) -> str:
    # Stable across edits, so a moved window updates the event instead of adding one.
    return f"maintenance-window-{window.pk}@{domain}"


def feed(
    *, windows: Iterable[MaintenanceWindow], domain: str, now: dt.datetime | None = None
) -> bytes:
    now = now or timezone.now()
    calendar = icalendar.Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", "PUBLISH")
    calendar.add("x-wr-calname", "Maintenance windows")
    calendar.add("x-published-ttl", "PT1H")
    for window in windows:
        event = icalendar.Event()
        event.add("uid", window_uid(window, domain))
        event.add("dtstamp", now.astimezone(dt.UTC))
        event.add("dtstart", window.starts_at.astimezone(dt.UTC))
        event.add("dtend", window.ends_at.astimezone(dt.UTC))
        event.add("summary", f"Maintenance: {window.title}")
        systems = ", ".join(s.name for s in window.systems.all())
        event.add(
            "description",
            "\n".join(
                [
                    f"{window.get_kind_display()} — {window.get_status_display()}",
                    f"Affected systems: {systems or 'none listed'}",
                    f"Expected impact: {window.expected_impact or 'not stated'}",
                ]
            ),
        )
        event.add("categories", [window.get_kind_display()])
        # A cancelled window stays in the feed as CANCELLED with a higher SEQUENCE: calendar
        # apps then remove it, where a vanished event is often kept for ever.
        event.add("sequence", window.sequence)
        event.add("status", "CANCELLED" if window.status == WindowStatus.CANCELLED else "CONFIRMED")
        event.add("transp", "OPAQUE")
        calendar.add_component(event)
    return calendar.to_ical()
