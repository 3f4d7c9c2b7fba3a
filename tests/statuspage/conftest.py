"""Components mapped to real systems, the seeded roles, and helpers to deliver the emails the
status page queues through a real SMTP server."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from opsportal.access import groups_load_defaults
from opsportal.people.models import Notification, NotificationStatus
from opsportal.people.tasks import deliver_notification
from opsportal.statuspage.models import Component
from tests import realsystems


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def responder(db):
    """An On-call engineer (seeded group): may publish incidents and post public updates."""
    groups_load_defaults()
    user = get_user_model().objects.create_user(
        "olive", password="pw-olive-123!", is_staff=True, first_name="Olive"
    )
    user.groups.add(Group.objects.get(name="On-call engineers"))
    return get_user_model().objects.get(pk=user.pk)


@pytest.fixture
def viewer(db):
    groups_load_defaults()
    user = get_user_model().objects.create_user("vic", password="pw-vic-123!", is_staff=True)
    user.groups.add(Group.objects.get(name="Viewers"))
    return get_user_model().objects.get(pk=user.pk)


@pytest.fixture
def components(db) -> dict[str, Component]:
    return {
        name: Component.objects.create(name=name, position=i, description=f"The {name}.")
        for i, name in enumerate(["API", "Web app", "Database", "Background jobs"])
    }


@pytest.fixture
def smtp(settings):
    with realsystems.smtp_server() as server:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = (
            "127.0.0.1",
            server.port,
            5,
        )
        settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
        settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
        yield server


def deliver_pending() -> list[Notification]:
    """Run the real delivery task for every queued notification (what the worker does once
    the transaction that queued them commits)."""
    pending = list(
        Notification.objects.filter(status=NotificationStatus.PENDING)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    for pk in pending:
        deliver_notification.apply(args=[pk])
    return list(Notification.objects.filter(pk__in=pending))


def mails_to(smtp, address: str) -> list[str]:
    return [m["data"] for m in smtp.messages if address in m["to"]]


@pytest.fixture
def devops(db):
    groups_load_defaults()
    user = get_user_model().objects.create_user("dora", password="pw-dora-123!", is_staff=True)
    user.groups.add(Group.objects.get(name="DevOps"))
    return get_user_model().objects.get(pk=user.pk)


@pytest.fixture
def public_window(devops, components):
    """Schedule a public window through the maintenance service, as the admin does."""
    import datetime as dt

    from django.utils import timezone

    from maintenance.models import MaintenanceWindow, WindowKind
    from maintenance.services import window_schedule

    def make(*, starts_in=dt.timedelta(days=2), length=dt.timedelta(hours=2), affects=(), **fields):
        starts_at = timezone.now() + starts_in
        fields.setdefault("title", "Internal: pg 15.4 -> 15.6 on db-primary")
        fields.setdefault("kind", WindowKind.AD_HOC)
        fields.setdefault("public", True)
        fields.setdefault("public_title", "Database upgrade")
        fields.setdefault("public_impact", "Writes pause for up to five minutes.")
        window = MaintenanceWindow(starts_at=starts_at, ends_at=starts_at + length, **fields)
        window = window_schedule(window=window, actor=devops)
        window.public_components.set([components[name] for name in affects])
        return window

    return make
