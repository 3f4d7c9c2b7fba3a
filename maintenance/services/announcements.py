"""Announcements of maintenance windows: lead-time, start, completion and cancellation
notices to DevOps and the window's own audience, each recorded once."""

from __future__ import annotations

import datetime as dt

from django.db import IntegrityError, transaction
from django.utils import timezone

from maintenance.models import (
    UPCOMING_STATUSES,
    Announcement,
    AnnouncementKind,
    MaintenanceWindow,
    WindowStatus,
)
from maintenance.public import public_window_announce
from maintenance.services._common import MAX_LEAD_HOURS, _notify_audience, _utc
from opsportal.audit.models import AuditAction
from opsportal.audit.services import audit_record
from opsportal.people.models import Responsibility
from opsportal.people.services import notify


def _announcement_text(window: MaintenanceWindow, kind: str, lead_hours: int) -> tuple[str, str]:
    when = f"{_utc(window.starts_at)} to {_utc(window.ends_at)}"
    subject = {
        AnnouncementKind.LEAD: f"Planned maintenance: {window.title}, {_utc(window.starts_at)}",
        AnnouncementKind.START: f"Maintenance started: {window.title}",
        AnnouncementKind.COMPLETION: f"Maintenance {window.get_status_display().lower()}: "
        f"{window.title}",
        AnnouncementKind.CANCELLATION: f"Maintenance cancelled: {window.title}",
    }[kind]
    systems = ", ".join(s.name for s in window.systems.all()) or "none listed"
    lines = [
        f"{window.get_kind_display()}: {window.title}",
        f"When: {when}",
        f"Affected systems: {systems}",
        f"Expected impact: {window.expected_impact or 'not stated'}",
    ]
    if kind == AnnouncementKind.LEAD and lead_hours:
        lines.insert(0, f"Starts in about {lead_hours} h.")
    if kind == AnnouncementKind.COMPLETION and window.finished_at:
        lines.append(f"Finished: {_utc(window.finished_at)}")
    return subject[:255], "\n".join(lines)


def window_announce(
    *, window: MaintenanceWindow, kind: str, lead_hours: int = 0
) -> Announcement | None:
    """Send one announcement (to DevOps and the window's audience) and record it; None if
    this one was already sent."""
    with transaction.atomic():
        subject, body = _announcement_text(window, kind, lead_hours)
        try:
            with transaction.atomic():
                announcement = Announcement.objects.create(
                    window=window, kind=kind, lead_hours=lead_hours, subject=subject
                )
        except IntegrityError:
            return None
        sent = notify(
            responsibility=Responsibility.DEVOPS, subject=subject, body=body, about=window
        )
        sent += _notify_audience(
            emails=window.email_list,
            webhook=window.webhook,
            subject=subject,
            body=body,
            about=window,
        )
        # The status page's subscribers of the affected components (public windows only).
        public_window_announce(window=window, kind=kind, lead_hours=lead_hours)
        announcement.recipients = "\n".join(n.destination for n in sent)
        announcement.notification_ids = [n.pk for n in sent]
        announcement.save(update_fields=["recipients", "notification_ids"])
        if kind == AnnouncementKind.LEAD and window.status == WindowStatus.PLANNED:
            MaintenanceWindow.objects.filter(pk=window.pk, status=WindowStatus.PLANNED).update(
                status=WindowStatus.ANNOUNCED
            )
            window.status = WindowStatus.ANNOUNCED
        audit_record(
            action=AuditAction.OPERATION,
            obj=window,
            message=f"Announced ({announcement.get_kind_display().lower()}"
            + (f", {lead_hours} h ahead" if lead_hours else "")
            + f") to {len(sent)} destination(s).",
        )
    return announcement


def windows_announce_due(*, now: dt.datetime | None = None) -> int:
    """Send the lead-time announcements that are due (72 h and 24 h ahead by default)."""
    now = now or timezone.now()
    candidates = MaintenanceWindow.objects.filter(
        status__in=UPCOMING_STATUSES,
        starts_at__gt=now,
        starts_at__lte=now + dt.timedelta(hours=MAX_LEAD_HOURS),
    ).prefetch_related("announcements")
    sent = 0
    for window in candidates:
        done = {(a.kind, a.lead_hours) for a in window.announcements.all()}
        due = [h for h in window.lead_hours if window.starts_at - dt.timedelta(hours=h) <= now]
        # Only the nearest due lead time: a window scheduled 10 h ahead gets one announcement,
        # not a 72 h and a 24 h one at once.
        if (
            due
            and (AnnouncementKind.LEAD, min(due)) not in done
            and window_announce(window=window, kind=AnnouncementKind.LEAD, lead_hours=min(due))
        ):
            sent += 1
    return sent
