"""Paging people: who gets what, and delivering it reliably."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterable

from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone

from opsportal.audit.models import AuditAction, AuditOutcome
from opsportal.audit.services import audit_record
from opsportal.jobs import JobSpec, job_claim, job_sweep
from opsportal.people.models import (
    Notification,
    NotificationChannelKind,
    NotificationStatus,
    OnCallRotation,
    Responsibility,
    Team,
    WebhookChannel,
)
from opsportal.people.selectors import on_call_contacts
from opsportal.people.signals import notification_attempted
from opsportal.people.transports import DeliveryFailed, post_webhook, send_email, webhook_payload
from opsportal.queueing import enqueue_after_commit

logger = logging.getLogger(__name__)

# How long a "sending" claim may last before the sweeper assumes the worker died.
SENDING_CLAIM_TIMEOUT = dt.timedelta(minutes=5)
# Pending rows older than this without delivery were probably never dispatched.
UNDISPATCHED_AFTER = dt.timedelta(seconds=60)
# The sweep delivers in its own task; it stops starting deliveries after this long so it
# ends well inside its time limit (240 s soft) even if every webhook times out. What is
# left is the next sweep's.
SWEEP_BUDGET_SECONDS = 150


def notify(
    *,
    responsibility: str,
    subject: str,
    body: str = "",
    about: models.Model | None = None,
    links: list[dict] | tuple = (),
) -> list[Notification]:
    """Notify whoever answers for `responsibility` now: the team's address, its chat
    webhooks, and (for the on-call engineer) the person on call and their pager.

    Rows are created in the caller's transaction and delivered after it commits; a
    delivery failure is retried by the worker and never raises here. Paging is a side
    effect of the caller's workflow (opening an incident, starting a window): if even
    recording the notification fails, that is logged and the workflow goes on.
    """
    try:
        # A savepoint, so a failed insert does not poison the caller's transaction.
        with transaction.atomic():
            return _notify(
                responsibility=responsibility, subject=subject, body=body, about=about, links=links
            )
    except Exception:
        logger.exception("Could not record the notification %r for %s", subject, responsibility)
        return []


def _notify(
    *, responsibility: str, subject: str, body: str, about: models.Model | None, links
) -> list[Notification]:
    team = Team.objects.filter(responsibility=responsibility).first()
    if team is None:
        logger.warning("No team answers for %s; nobody was notified of %r", responsibility, subject)
        return []
    recipients: list[str] = []
    if team.email:
        recipients.append(team.email)
    if responsibility == Responsibility.ON_CALL:
        for contact in on_call_contacts(team=team):
            recipients.extend(a for a in (contact.email, contact.pager_email) if a)
    return notify_destinations(
        emails=recipients,
        webhook_ids=team.webhooks.filter(active=True).order_by("name").values_list("pk", flat=True),
        responsibility=responsibility,
        subject=subject,
        body=body,
        about=about,
        links=links,
    )


def notify_destinations(
    *,
    emails: Iterable[str] = (),
    webhook_ids: Iterable[int] = (),
    subject: str,
    body: str = "",
    about: models.Model | None = None,
    links: list[dict] | tuple = (),
    responsibility: str = "",
) -> list[Notification]:
    """Notify these addresses and chat webhooks (a caller that chose them itself, like an
    escalation step), with `links` as buttons in chat. Rows are created in the caller's
    transaction and delivered after it commits, with the same retries as `notify`."""
    about_fields = {}
    if about is not None:
        about_fields = {
            "about_type": ContentType.objects.get_for_model(about),
            "about_id": str(about.pk),
        }
    # A long subject is cut, not refused: the page matters more than its last words.
    subject = subject if len(subject) <= 255 else subject[:254] + "…"
    common = {
        "responsibility": responsibility,
        "subject": subject,
        "body": body,
        "links": list(links),
        **about_fields,
    }
    created = [
        Notification(channel=NotificationChannelKind.EMAIL, recipient=address, **common)
        for address in dict.fromkeys(a for a in emails if a)
    ]
    # Ids only: the URLs are decrypted at delivery, so one webhook whose URL no longer
    # decrypts fails on its own instead of stopping everyone else's pages.
    created += [
        Notification(channel=NotificationChannelKind.WEBHOOK, webhook_id=webhook_id, **common)
        for webhook_id in dict.fromkeys(webhook_ids)
    ]
    for notification in created:
        notification.save()
        _dispatch(notification)
    return created


def notification_email_queue(
    *, recipient: str, subject: str, body: str, about: models.Model | None = None
) -> Notification:
    """One email to one address outside the teams (a status page subscriber), delivered like
    every notification: a row now, sent by the worker after commit, retried with backoff."""
    about_fields = {}
    if about is not None:
        about_fields = {
            "about_type": ContentType.objects.get_for_model(about),
            "about_id": str(about.pk),
        }
    notification = Notification.objects.create(
        channel=NotificationChannelKind.EMAIL,
        recipient=recipient,
        subject=subject if len(subject) <= 255 else subject[:254] + "…",
        body=body,
        **about_fields,
    )
    _dispatch(notification)
    return notification


def _dispatch(notification: Notification) -> None:
    from opsportal.people.tasks import deliver_notification

    enqueue_after_commit(deliver_notification, notification.pk)


def retry_delay(attempts: int) -> dt.timedelta:
    """Backoff after the `attempts`-th failed attempt: 30 s, 1 min, 2 min, … up to 30 min."""
    return dt.timedelta(seconds=min(30 * 2 ** (attempts - 1), 1800))


def notification_deliver(
    *, notification_id: int, now: dt.datetime | None = None
) -> Notification | None:
    """Deliver one notification once; on failure schedule a retry with backoff.

    Returns None when the row is not due or someone else has claimed it (a redelivered
    message, or the sweeper racing the worker)."""
    now = now or timezone.now()
    # Claimed only once its retry is due (the backoff is the notification's own rule);
    # `next_attempt_at` doubles as the claim's expiry for the sweeper.
    if not job_claim(
        Notification,
        notification_id,
        from_status=NotificationStatus.PENDING,
        to_status=NotificationStatus.SENDING,
        when=Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now),
        next_attempt_at=now + SENDING_CLAIM_TIMEOUT,
    ):
        return None
    notification = Notification.objects.get(pk=notification_id)
    try:
        _send(notification)
    except Exception as exc:
        # Anything that goes wrong counts as a failed attempt, so a broken row (say, a
        # webhook URL that no longer decrypts) ends `failed` instead of being retried
        # for ever. Only DeliveryFailed messages are shown: other exceptions may quote
        # the webhook URL, which carries its token.
        if isinstance(exc, DeliveryFailed):
            error = str(exc)
        else:
            logger.warning("Notification %s could not be delivered", notification_id)
            error = f"Delivery failed: {type(exc).__name__}."
        notification.attempts += 1
        notification.last_error = error[:2000]
        if notification.attempts >= settings.NOTIFICATION_MAX_ATTEMPTS:
            notification.status = NotificationStatus.FAILED
            notification.next_attempt_at = None
        else:
            notification.status = NotificationStatus.PENDING
            notification.next_attempt_at = now + retry_delay(notification.attempts)
        notification.save(update_fields=["attempts", "last_error", "status", "next_attempt_at"])
        _attempted(notification)
        return notification
    notification.attempts += 1
    notification.status = NotificationStatus.SENT
    notification.sent_at = timezone.now()
    notification.next_attempt_at = None
    notification.save(update_fields=["attempts", "status", "sent_at", "next_attempt_at"])
    _attempted(notification)
    return notification


def _attempted(notification: Notification) -> None:
    try:
        notification_attempted.send(sender=Notification, notification=notification)
    except Exception:
        # A subscriber's failure is not the delivery's: the outcome is recorded already.
        logger.exception("A subscriber to notification %s's outcome failed", notification.pk)


def _send(notification: Notification) -> None:
    if notification.channel == NotificationChannelKind.EMAIL:
        send_email(
            recipient=notification.recipient, subject=notification.subject, body=notification.body
        )
        return
    # Loaded here, not with select_related, so a URL that fails to decrypt is a failed
    # attempt of this notification rather than an error while claiming it.
    webhook = (
        WebhookChannel.objects.filter(pk=notification.webhook_id).first()
        if notification.webhook_id
        else None
    )
    if webhook is None:
        raise DeliveryFailed("The webhook channel was deleted before delivery.")
    payload = webhook_payload(
        format=webhook.format,
        subject=notification.subject,
        body=notification.body,
        links=notification.links,
        context={
            # Delivery is at-least-once: receivers can drop repeats by this id.
            "notification_id": notification.pk,
            "responsibility": notification.responsibility,
            "about": f"{notification.about_type.model}:{notification.about_id}"
            if notification.about_type_id
            else None,
        },
    )
    post_webhook(name=webhook.name, url=webhook.url, payload=payload)


def _notification_reclaim(notification: Notification, now: dt.datetime) -> bool:
    """A "sending" claim whose expiry (`next_attempt_at`) has passed: the worker died while
    sending. The row is pending again and due at once, for this sweep to deliver."""
    return job_claim(
        Notification,
        notification.pk,
        from_status=NotificationStatus.SENDING,
        to_status=NotificationStatus.PENDING,
        when=Q(next_attempt_at__lte=now),
        next_attempt_at=now,
    )


def notifications_sweep(*, now: dt.datetime | None = None) -> int:
    """Deliver notifications whose retry is due or whose message was lost (the broker
    was down when they were queued, or the worker died while sending)."""
    now = now or timezone.now()
    started: float | None = None
    out_of_time = False

    def deliver(notification: Notification) -> None:
        # The sweep delivers in its own task, within its budget; what is left after it is
        # the next sweep's.
        nonlocal started, out_of_time
        started = time.monotonic() if started is None else started
        if not out_of_time and time.monotonic() - started > SWEEP_BUDGET_SECONDS:
            logger.warning("Notification sweep out of time; the next sweep continues.")
            out_of_time = True
        if out_of_time:
            return
        try:
            notification_deliver(notification_id=notification.pk, now=now)
        except Exception:
            # One bad row must not stop the others from being delivered.
            logger.exception("Sweeping notification %s failed", notification.pk)

    # How the shared sweeper (opsportal.jobs) treats notifications. Lost: a pending row
    # whose retry is due (the backoff is the notification's own rule, in next_attempt_at),
    # or one never attempted UNDISPATCHED_AFTER after it was created. Dead: a "sending" row
    # whose claim expired; while sending, next_attempt_at holds the claim's expiry, so the
    # time limit is zero from it. A dead claim is made pending again first, so this same
    # sweep delivers it.
    counts = job_sweep(
        JobSpec(
            model=Notification,
            queued=NotificationStatus.PENDING,
            running=NotificationStatus.SENDING,
            dispatch=deliver,
            fail=_notification_reclaim,
            lost_after=UNDISPATCHED_AFTER,
            queued_field="created_at",
            lost_lookup="lte",
            retry_at_field="next_attempt_at",
            batch=500,
            started_field="next_attempt_at",
            time_limit=dt.timedelta(0),
            fail_at_limit=True,
            fail_dead_first=True,
        ),
        now=now,
    )
    return counts["redispatched"] + counts["failed"]


def people_load_defaults() -> None:
    """The runbook's contact list as teams, and an (empty) primary on-call rotation."""
    for name, responsibility in [
        ("On-call engineers", Responsibility.ON_CALL),
        ("Security team", Responsibility.SECURITY),
        ("Database admins", Responsibility.DATABASE),
        ("DevOps team", Responsibility.DEVOPS),
    ]:
        if not Team.objects.filter(responsibility=responsibility).exists():
            Team.objects.get_or_create(name=name, defaults={"responsibility": responsibility})
    on_call = Team.objects.get(responsibility=Responsibility.ON_CALL)
    if not OnCallRotation.objects.exists():
        OnCallRotation.objects.create(
            name="Primary on-call",
            team=on_call,
            shift_hours=168,
            handoff_at=dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC),
        )


def notifications_retry_failed(
    *, notifications: models.QuerySet[Notification], actor: object | None = None
) -> int:
    """Give failed notifications a fresh set of attempts (an operator's "retry now")."""
    with transaction.atomic():
        ids = list(
            notifications.filter(status=NotificationStatus.FAILED).values_list("pk", flat=True)
        )
        Notification.objects.filter(pk__in=ids, status=NotificationStatus.FAILED).update(
            status=NotificationStatus.PENDING, next_attempt_at=None, attempts=0
        )
        for pk in ids:
            audit_record(
                action=AuditAction.OPERATION,
                object_type=Notification._meta.label_lower,
                object_id=str(pk),
                object_repr=f"Notification #{pk}",
                actor=actor,
                outcome=AuditOutcome.REQUESTED,
                message="Retry delivery of a failed notification",
            )
            _dispatch(Notification(pk=pk))
    return len(ids)
