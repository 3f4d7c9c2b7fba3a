"""State changes of the status page: refreshing the precomputed page, subscribing,
confirming, unsubscribing and telling subscribers (through people's notification
deliveries: rows first, delivered by the worker with retries)."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable

from django.conf import settings
from django.core import signing
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import models, transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from opsportal.audit.models import AuditAction
from opsportal.audit.services import audit_record
from opsportal.people.services import notification_email_queue
from opsportal.queueing import enqueue_after_commit
from opsportal.refusals import ServiceRefused
from opsportal.statuspage import page, rules, sources, uptime
from opsportal.statuspage.models import (
    Component,
    StatusSnapshot,
    Subscriber,
)

logger = logging.getLogger(__name__)

CONFIRM_SALT = "statuspage.subscriber.confirm"
CONFIRM_MAX_AGE = dt.timedelta(days=3)


class SubscriptionRefused(ServiceRefused):
    """The request cannot be taken; `status` is the HTTP status the page answers with."""

    def __init__(self, message: str, *, status: int = 400):
        super().__init__(message)
        self.status = status


# --- the precomputed page ------------------------------------------------------------------


def _components() -> list[Component]:
    return list(
        Component.objects.prefetch_related("systems", "systems__collection").order_by(
            "position", "name"
        )
    )


def status_refresh(*, now: dt.datetime | None = None) -> StatusSnapshot:
    """Derive every component's state, bring the daily uptime up to date and render the page
    once, so each visit serves the stored result."""
    now = now or timezone.now()
    with transaction.atomic():
        # One refresh at a time: a slower one never overwrites a newer page.
        snapshot = StatusSnapshot.objects.select_for_update().filter(pk=1).first()
        components = _components()
        since = now - dt.timedelta(days=uptime.DAYS)
        incidents = sources.public_incidents(since=since)
        windows = sources.public_windows(
            start=now - dt.timedelta(days=1), end=now + dt.timedelta(days=page.UPCOMING_DAYS)
        )
        incident_states: dict[int, str] = {}
        for incident in incidents:
            if incident.active and incident.component_state:
                for component_id in incident.component_ids:
                    incident_states[component_id] = rules.worst(
                        [incident.component_state, incident_states.get(component_id, "operational")]
                    )
        maintenance = {c for w in windows if w.status == "in_progress" for c in w.component_ids}
        derived = rules.derive_states(
            components=components,
            now=now,
            incident_states=incident_states,
            maintenance=maintenance,
        )
        changed = []
        for component in components:
            result = derived[component.pk]
            if component.state != result.state or component.state_since is None:
                component.state = result.state
                component.state_since = now
                component.state_reason = result.reason
                changed.append(component)
            elif component.state_reason != result.reason:
                component.state_reason = result.reason
                changed.append(component)
        Component.objects.bulk_update(changed, ["state", "state_since", "state_reason"])
        days = uptime.uptime_update(components=components, today=now.astimezone(dt.UTC).date())
        overall, html = page.render_index(
            components=components, days=days, incidents=incidents, windows=windows, now=now
        )
        if snapshot is None:
            snapshot, _ = StatusSnapshot.objects.get_or_create(
                pk=1, defaults={"computed_at": now, "overall_state": overall, "html": ""}
            )
        snapshot.computed_at = now
        snapshot.version += 1
        snapshot.overall_state = overall
        snapshot.html = html
        snapshot.save()
    return snapshot


def status_refresh_soon() -> None:
    """Refresh once the caller's transaction commits (a public update was posted, a window
    started); a failure is logged and never breaks the caller's workflow."""

    def run() -> None:
        try:
            status_refresh()
        except Exception:
            logger.exception("Refreshing the status page failed")

    transaction.on_commit(run)


REFRESH_QUEUED_KEY = "statuspage:refresh-queued"


def status_refresh_request() -> None:
    """Have a worker refresh the page (on the default queue, so rendering never delays the
    collection queue); at most one refresh waits at a time."""
    from opsportal.statuspage.tasks import refresh

    if cache.add(REFRESH_QUEUED_KEY, 1, timeout=120):
        enqueue_after_commit(refresh)


def on_collection_finished(sender, round, **kwargs) -> None:
    # Checks and alert states just changed: the page follows within seconds.
    try:
        status_refresh_request()
    except Exception:
        logger.exception("Requesting a status page refresh after a collection round failed")


# --- subscriptions -------------------------------------------------------------------------


def _normalise(email: str) -> str:
    email = (email or "").strip()
    try:
        validate_email(email)
    except ValidationError:
        raise SubscriptionRefused(
            "That does not look like an email address. Check it and try again."
        ) from None
    # One subscription per mailbox whatever the capitals (providers ignore them).
    local, _, domain = email.lower().rpartition("@")
    blocked = {d.lower() for d in settings.STATUS_PAGE_BLOCKED_EMAIL_DOMAINS}
    if domain in blocked or any(domain.endswith("." + d) for d in blocked):
        raise SubscriptionRefused(
            "Addresses at throwaway mail services cannot subscribe: updates would be lost. "
            "Use an address you keep."
        )
    return f"{local}@{domain}"


def _rate_limit(key: str, limit: int, message: str) -> None:
    window = settings.STATUS_PAGE_SUBSCRIBE_WINDOW_SECONDS
    cache_key = f"statuspage:subscribe:{key}"
    cache.add(cache_key, 0, timeout=window)
    try:
        count = cache.incr(cache_key)
    except ValueError:  # expired between add and incr
        cache.set(cache_key, 1, timeout=window)
        count = 1
    if count > limit:
        raise SubscriptionRefused(message, status=429)


def components_for(ids: Iterable[str]) -> list[Component]:
    """The components named by id in a form; unknown or malformed ids are refused."""
    wanted: set[int] = set()
    for raw in ids:
        try:
            wanted.add(int(raw))
        except (TypeError, ValueError):
            raise SubscriptionRefused(f"There is no component {str(raw)[:40]!r}.") from None
    found = list(Component.objects.filter(pk__in=wanted))
    if len(found) != len(wanted):
        missing = sorted(wanted - {c.pk for c in found})
        raise SubscriptionRefused(
            "There is no component with the id " + ", ".join(map(str, missing)) + "."
        )
    return found


def confirmation_link(subscriber: Subscriber) -> str:
    signed = signing.dumps(
        {"id": subscriber.pk, "email": subscriber.email}, salt=CONFIRM_SALT, compress=True
    )
    return _absolute(reverse("statuspage:confirm", args=[signed]))


def unsubscribe_link(subscriber: Subscriber) -> str:
    return _absolute(reverse("statuspage:unsubscribe", args=[subscriber.token]))


def _absolute(path: str) -> str:
    return settings.STATUS_PAGE_BASE_URL.rstrip("/") + path


def subscriber_request(
    *, email: str, component_ids: Iterable[str] = (), client: str | None = None
) -> Subscriber:
    """Someone asked for updates: record the request and send the confirmation link. Asking
    again for a confirmed address changes nothing and sends it a note saying so."""
    email = _normalise(email)
    components = components_for(component_ids)
    _rate_limit(
        f"address:{email}",
        settings.STATUS_PAGE_SUBSCRIBE_PER_ADDRESS,
        "This address was sent several messages in the last hour already. "
        "Check its inbox (and spam folder), or try again later.",
    )
    if client:
        _rate_limit(
            f"client:{client}",
            settings.STATUS_PAGE_SUBSCRIBE_PER_CLIENT,
            "Too many subscription requests from your network. Try again in an hour.",
        )
    with transaction.atomic():
        subscriber, created = Subscriber.objects.select_for_update().get_or_create(email=email)
        if subscriber.confirmed_at is not None:
            notification_email_queue(
                recipient=email,
                subject="You are already subscribed to status updates",
                body="Someone (perhaps you) asked to subscribe this address to the platform's "
                "status updates. It is subscribed already; nothing was changed.\n\n"
                f"To stop the updates: {unsubscribe_link(subscriber)}\n",
                about=subscriber,
            )
            return subscriber
        subscriber.components.set(components)
        subscriber.confirmation_sent_at = timezone.now()
        subscriber.save(update_fields=["confirmation_sent_at"])
        scope = ", ".join(c.name for c in components) or "every component"
        notification_email_queue(
            recipient=email,
            subject="Confirm your subscription to status updates",
            body="Someone (perhaps you) asked to receive the platform's incident and "
            f"maintenance updates ({scope}) at this address.\n\n"
            f"To confirm, open this link within 3 days:\n{confirmation_link(subscriber)}\n\n"
            "If it was not you, ignore this message: nothing will be sent.\n",
            about=subscriber,
        )
        audit_record(
            action=AuditAction.CREATE if created else AuditAction.CHANGE,
            object_type=Subscriber._meta.label_lower,
            object_id=str(subscriber.pk),
            object_repr=f"Subscriber #{subscriber.pk}",
            message="Status page subscription requested; confirmation sent.",
        )
    return subscriber


def subscriber_for_confirmation(*, signed: str) -> Subscriber:
    """The subscriber a confirmation link names; refused when forged, expired or stale."""
    try:
        payload = signing.loads(signed, salt=CONFIRM_SALT, max_age=CONFIRM_MAX_AGE.total_seconds())
    except signing.SignatureExpired:
        raise SubscriptionRefused(
            "This confirmation link has expired. Subscribe again to get a new one."
        ) from None
    except signing.BadSignature:
        raise SubscriptionRefused(
            "This confirmation link is not valid. Copy the whole link from the message, "
            "or subscribe again."
        ) from None
    subscriber = Subscriber.objects.filter(pk=payload.get("id"), email=payload.get("email")).first()
    if subscriber is None:
        raise SubscriptionRefused(
            "This subscription no longer exists (it was cancelled). Subscribe again if you "
            "want updates.",
            status=404,
        )
    return subscriber


def subscriber_confirm(*, signed: str) -> tuple[Subscriber, bool]:
    """Confirm from the link; (subscriber, False) when it was confirmed already."""
    with transaction.atomic():
        subscriber = subscriber_for_confirmation(signed=signed)
        updated = Subscriber.objects.filter(pk=subscriber.pk, confirmed_at=None).update(
            confirmed_at=timezone.now()
        )
        subscriber.refresh_from_db()
        if updated:
            audit_record(
                action=AuditAction.CHANGE,
                object_type=Subscriber._meta.label_lower,
                object_id=str(subscriber.pk),
                object_repr=f"Subscriber #{subscriber.pk}",
                message="Status page subscription confirmed.",
            )
    return subscriber, bool(updated)


def subscriber_for_token(*, token: str) -> Subscriber:
    subscriber = Subscriber.objects.filter(token=token).first() if token else None
    if subscriber is None:
        raise SubscriptionRefused(
            "This unsubscribe link is not valid, or the address was unsubscribed already. "
            "Nothing was changed.",
            status=404,
        )
    return subscriber


def subscriber_unsubscribe(*, token: str) -> None:
    """One click from any message: the address and its choices are deleted."""
    with transaction.atomic():
        subscriber = subscriber_for_token(token=token)
        audit_record(
            action=AuditAction.DELETE,
            object_type=Subscriber._meta.label_lower,
            object_id=str(subscriber.pk),
            object_repr=f"Subscriber #{subscriber.pk}",
            message="Unsubscribed from the status page.",
        )
        subscriber.delete()


def subscribers_notify(
    *,
    component_ids: Iterable[int],
    subject: str,
    body: str,
    about: models.Model | None = None,
) -> int:
    """Queue one email per confirmed subscriber of any of these components (or of every
    component). Delivered by people's notification worker with retries; never raises, so
    a mail problem never blocks an incident or a window."""
    try:
        with transaction.atomic():
            ids = list(component_ids)
            audience = Subscriber.objects.filter(confirmed_at__isnull=False).filter(
                Q(components__isnull=True) | Q(components__in=ids)
            )
            count = 0
            for subscriber in audience.distinct().order_by("pk"):
                notification_email_queue(
                    recipient=subscriber.email,
                    subject=subject,
                    body=f"{body}\n\n--\nStatus page: {_absolute(reverse('statuspage:index'))}\n"
                    f"Unsubscribe with one click: {unsubscribe_link(subscriber)}\n",
                    about=about,
                )
                count += 1
            return count
    except Exception:
        logger.exception("Could not queue the status update %r for subscribers", subject)
        return 0


def statuspage_load_defaults() -> None:
    """Refresh the page every minute besides after each collection round."""
    from opsportal.schedules import periodic_task_ensure

    periodic_task_ensure(
        name="Status page: refresh",
        task="statuspage.refresh",
        every_seconds=60,
        description="Recompute the public status page (component states, uptime, windows).",
    )
