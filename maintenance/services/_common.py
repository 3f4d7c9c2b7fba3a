"""What several maintenance service modules share: the refusal they raise, the permission
check, the conduct permission, time formatting, the shared sweeper and lead-time limits, and
sending a notification to a window's (or team's) own audience."""

from __future__ import annotations

import datetime as dt

from django.contrib.contenttypes.models import ContentType

from opsportal.actors import actor_require
from opsportal.people.models import Notification, NotificationChannelKind, WebhookChannel
from opsportal.queueing import enqueue_after_commit
from opsportal.refusals import ServiceRefused

CONDUCT = "maintenance.conduct_maintenancewindow"


# A queued step whose message never reached a worker is sent again after this.
UNDISPATCHED_AFTER = dt.timedelta(seconds=60)


# Lead times longer than this are refused (announcing a month ahead is plenty).
MAX_LEAD_HOURS = 24 * 31


class MaintenanceError(ServiceRefused):
    """A workflow step refused, with a message that says what to do."""


def _require(actor: object | None, permission: str, doing: str) -> None:
    actor_require(actor, permission, doing=doing)


def _utc(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _notify_audience(
    *, emails: list[str], webhook: WebhookChannel | None, subject: str, body: str, about
) -> list[Notification]:
    """Notification rows for a window's own audience, delivered by the people worker."""
    from opsportal.people.tasks import deliver_notification

    about_fields = {
        "about_type": ContentType.objects.get_for_model(about),
        "about_id": str(about.pk),
    }
    rows = [
        Notification(
            channel=NotificationChannelKind.EMAIL,
            recipient=address,
            subject=subject,
            body=body,
            **about_fields,
        )
        for address in emails
    ]
    if webhook is not None and webhook.active:
        rows.append(
            Notification(
                channel=NotificationChannelKind.WEBHOOK,
                webhook=webhook,
                subject=subject,
                body=body,
                **about_fields,
            )
        )
    for row in rows:
        row.save()
        enqueue_after_commit(deliver_notification, row.pk)
    return rows
