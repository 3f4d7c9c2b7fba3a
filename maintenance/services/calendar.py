"""Each person's calendar subscription: the secret feed link and the time zone it shows."""

from __future__ import annotations

from maintenance import recurrence
from maintenance.models import CalendarSubscription
from opsportal.audit.models import AuditAction
from opsportal.audit.services import audit_record


def calendar_subscription_get(*, user) -> CalendarSubscription:
    subscription, _ = CalendarSubscription.objects.get_or_create(user=user)
    return subscription


def calendar_subscription_reset(*, user) -> CalendarSubscription:
    """A new secret link; the old one stops working (e.g. it was shared by mistake)."""
    import secrets

    subscription = calendar_subscription_get(user=user)
    subscription.token = secrets.token_urlsafe()
    subscription.save(update_fields=["token"])
    audit_record(
        action=AuditAction.OPERATION,
        obj=subscription,
        message="Calendar feed link replaced; the previous link no longer works.",
        actor=user,
    )
    return subscription


def calendar_time_zone_set(*, user, time_zone: str) -> CalendarSubscription:
    recurrence.zone(time_zone)
    subscription = calendar_subscription_get(user=user)
    subscription.time_zone = time_zone
    subscription.save(update_fields=["time_zone"])
    return subscription
