"""Announcing a window to its audience's chat webhook: a real HTTP server on loopback
receives the Slack-compatible payload; a webhook that fails is retried by the people
sweeper, and the announcement is delivered once it answers, not lost."""

import datetime as dt
import json

import pytest
from django.utils import timezone

from maintenance.models import AnnouncementKind, WindowStatus
from maintenance.services import window_announce, windows_announce_due
from opsportal.celery import app as celery_app
from opsportal.people.models import (
    Notification,
    NotificationChannelKind,
    NotificationStatus,
    Team,
    WebhookChannel,
    WebhookFormat,
)
from opsportal.people.services import notifications_sweep, retry_delay

pytestmark = pytest.mark.django_db

# Webhook URLs carry their token in the path, like Slack's /services/T…/B…/<token>.
HOOK_PATH = "/services/T0MAINT/B0MAINT/maint-hook-token-42"


@pytest.fixture
def run_tasks_in_process():
    """Tasks queued after commit run in this process (Celery's eager mode): the code path
    a worker runs, without a broker round trip."""
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = False


@pytest.fixture
def users_room(db, http_server):
    team = Team.objects.create(name="Platform users", email="")
    return WebhookChannel.objects.create(
        name="platform-users-room",
        team=team,
        format=WebhookFormat.SLACK,
        url=http_server.url + HOOK_PATH,
    )


def posts(http_server) -> list[tuple[str, dict]]:
    return [
        (path, json.loads(body)) for path, _headers, *rest in http_server.requests for body in rest
    ]


def webhook_notification(window) -> Notification:
    [notification] = Notification.objects.filter(
        about_id=str(window.pk), channel=NotificationChannelKind.WEBHOOK
    )
    return notification


def test_lead_announcement_reaches_the_webhook_as_a_slack_message(
    schedule,
    users_room,
    redis_target,
    http_server,
    run_tasks_in_process,
    django_capture_on_commit_callbacks,
):
    window = schedule(
        systems=[redis_target],
        title="Redis 7.4 upgrade",
        starts_in=dt.timedelta(hours=20),
        expected_impact="Cache cold for 5 min",
        webhook=users_room,
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert windows_announce_due() == 1

    [(path, payload)] = posts(http_server)
    assert path == HOOK_PATH
    subject = f"Planned maintenance: Redis 7.4 upgrade, {window.starts_at:%Y-%m-%d %H:%M} UTC"
    assert payload["blocks"][0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": subject},
    }
    section = payload["blocks"][1]
    assert section["type"] == "section" and section["text"]["type"] == "mrkdwn"
    assert "Starts in about 24 h." in section["text"]["text"]
    assert "Affected systems: test-redis" in section["text"]["text"]
    assert "Expected impact: Cache cold for 5 min" in section["text"]["text"]
    assert payload["text"].startswith(f"*{subject}*\n")

    announcement = window.announcements.get()
    assert (announcement.kind, announcement.lead_hours) == (AnnouncementKind.LEAD, 24)
    notification = webhook_notification(window)
    assert notification.pk in announcement.notification_ids
    assert "platform-users-room" in announcement.recipients
    assert notification.status == NotificationStatus.SENT
    window.refresh_from_db()
    assert window.status == WindowStatus.ANNOUNCED


def test_a_failing_webhook_is_retried_and_the_announcement_delivered_later(
    schedule,
    users_room,
    http_server,
    run_tasks_in_process,
    django_capture_on_commit_callbacks,
):
    window = schedule(title="Kernel patches", starts_in=dt.timedelta(minutes=5), webhook=users_room)
    http_server.behaviour.status = 503  # the chat service is having a bad day
    with django_capture_on_commit_callbacks(execute=True):
        window_announce(window=window, kind=AnnouncementKind.START)

    notification = webhook_notification(window)
    assert notification.status == NotificationStatus.PENDING  # not lost: retried later
    assert notification.attempts == 1
    assert notification.last_error == "Webhook platform-users-room answered HTTP 503."
    assert HOOK_PATH.rsplit("/", 1)[1] not in notification.last_error  # no token shown
    announcement = window.announcements.get(kind=AnnouncementKind.START)
    assert notification.pk in announcement.notification_ids
    first_retry = notification.next_attempt_at
    assert first_retry <= timezone.now() + retry_delay(1)

    # Still failing at the first retry: one more attempt, the wait doubles.
    notifications_sweep(now=first_retry)
    notification.refresh_from_db()
    assert (notification.status, notification.attempts) == (NotificationStatus.PENDING, 2)

    # The service is back: the next retry delivers the same announcement, once.
    http_server.behaviour.status = 200
    notifications_sweep(now=notification.next_attempt_at)
    notification.refresh_from_db()
    assert (notification.status, notification.attempts) == (NotificationStatus.SENT, 3)
    delivered = posts(http_server)
    assert len(delivered) == 3
    assert {p["blocks"][0]["text"]["text"] for _, p in delivered} == {
        "Maintenance started: Kernel patches"
    }
    notifications_sweep(now=timezone.now() + dt.timedelta(days=1))
    assert len(http_server.requests) == 3  # nothing sent twice once it got through
