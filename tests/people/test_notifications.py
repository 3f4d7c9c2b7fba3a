"""notify(): who is paged for what, delivery by email and webhooks, retries with backoff,
and the sweeper that picks up what the broker lost. Webhooks are POSTed to a real HTTP
server on loopback; email goes through Django's mail backend (locmem in tests)."""

from __future__ import annotations

import datetime as dt
import json
import logging

import pytest
from cryptography.fernet import Fernet
from django.utils import timezone

from opsportal.celery import app as celery_app
from opsportal.people.models import (
    Contact,
    Notification,
    NotificationChannelKind,
    NotificationStatus,
    Responsibility,
    Team,
    WebhookChannel,
    WebhookFormat,
)
from opsportal.people.services import (
    UNDISPATCHED_AFTER,
    notification_deliver,
    notifications_sweep,
    notify,
    retry_delay,
)
from opsportal.people.tasks import deliver_notification, sweep_notifications
from opsportal.systems import fields
from tests.people.conftest import WEBHOOK_TOKEN
from tests.realsystems import free_port

SECOND = dt.timedelta(seconds=1)


@pytest.fixture
def run_tasks_in_process():
    """Tasks queued after commit run right away in this process (Celery's eager mode),
    so a test sees the same code path a worker runs, without a broker round trip."""
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = False


def notify_and_deliver(django_capture_on_commit_callbacks, **kwargs) -> list[Notification]:
    with django_capture_on_commit_callbacks(execute=True):
        notifications = notify(**kwargs)
    return [Notification.objects.get(pk=n.pk) for n in notifications]


def the_webhook(notifications: list[Notification]) -> Notification:
    [webhook] = [n for n in notifications if n.channel == NotificationChannelKind.WEBHOOK]
    return webhook


def webhook_posts(http_server) -> list[tuple[str, dict, dict]]:
    return [
        (path, headers, json.loads(body))
        for path, headers, *rest in http_server.requests
        for body in rest
    ]


def put_alice_on_call(rotation) -> None:
    rotation.handoff_at = timezone.now() - dt.timedelta(hours=1)
    rotation.save()


# ---------------------------------------------------------------- routing


def test_on_call_pages_team_address_the_person_on_call_and_their_pager(
    rotation, slack_webhook, http_server
):
    put_alice_on_call(rotation)
    WebhookChannel.objects.create(
        name="muted", team=rotation.team, url=http_server.url + "/muted", active=False
    )
    security = Team.objects.create(name="Security", responsibility=Responsibility.SECURITY)
    WebhookChannel.objects.create(name="sec-room", team=security, url=http_server.url + "/sec")

    created = notify(responsibility=Responsibility.ON_CALL, subject="API p95 above 500 ms")

    emails = [n.recipient for n in created if n.channel == NotificationChannelKind.EMAIL]
    webhooks = [n.webhook.name for n in created if n.channel == NotificationChannelKind.WEBHOOK]
    assert emails == ["oncall@example.com", "alice@example.com", "alice@pager.example.com"]
    assert webhooks == ["ops-alerts"]
    assert all(n.status == NotificationStatus.PENDING for n in created)
    assert all(n.responsibility == Responsibility.ON_CALL for n in created)


def test_an_override_is_paged_instead_of_the_rotations_turn(rotation):
    from opsportal.people.models import OnCallOverride

    put_alice_on_call(rotation)
    dave = Contact.objects.create(
        name="Dave", team=rotation.team, email="dave@example.com", pager_email=""
    )
    now = timezone.now()
    OnCallOverride.objects.create(
        rotation=rotation, contact=dave, starts_at=now - SECOND * 60, ends_at=now + SECOND * 3600
    )
    created = notify(responsibility=Responsibility.ON_CALL, subject="Disk space low")
    assert [n.recipient for n in created] == ["oncall@example.com", "dave@example.com"]


@pytest.mark.parametrize(
    "responsibility", [Responsibility.SECURITY, Responsibility.DATABASE, Responsibility.DEVOPS]
)
def test_other_roles_get_their_team_address_and_webhooks_not_the_on_call_person(
    rotation, http_server, responsibility
):
    put_alice_on_call(rotation)
    team = Team.objects.create(
        name="Role team", responsibility=responsibility, email="role@example.com"
    )
    Contact.objects.create(name="Member", team=team, email="member@example.com")
    WebhookChannel.objects.create(
        name="role-hook", team=team, format=WebhookFormat.GENERIC, url=http_server.url + "/h"
    )

    created = notify(responsibility=responsibility, subject="Weekly security scan found 2 CVEs")

    assert [(n.channel, n.recipient or n.webhook.name) for n in created] == [
        (NotificationChannelKind.EMAIL, "role@example.com"),
        (NotificationChannelKind.WEBHOOK, "role-hook"),
    ]


def test_the_same_address_is_notified_once(rotation):
    put_alice_on_call(rotation)
    Contact.objects.filter(name="Alice").update(email="oncall@example.com")
    created = notify(responsibility=Responsibility.ON_CALL, subject="Deduplicated")
    assert [n.recipient for n in created] == ["oncall@example.com", "alice@pager.example.com"]


def test_nobody_answering_for_a_role_is_logged_and_nothing_is_recorded(db, caplog):
    with caplog.at_level(logging.WARNING, logger="opsportal.people.services"):
        assert notify(responsibility=Responsibility.DATABASE, subject="Backups failing") == []
    assert "No team answers for database" in caplog.text
    assert not Notification.objects.exists()


def test_notifications_link_to_what_they_are_about(rotation):
    created = notify(responsibility=Responsibility.ON_CALL, subject="About", about=rotation)
    assert created
    for notification in Notification.objects.filter(pk__in=[n.pk for n in created]):
        assert notification.about == rotation


def test_a_subject_too_long_for_the_column_is_cut_not_refused(on_call_team):
    created = notify(responsibility=Responsibility.ON_CALL, subject="x" * 400)
    assert len(Notification.objects.get(pk=created[0].pk).subject) == 255


# ---------------------------------------------------------------- delivery


def test_email_is_sent_through_django_mail_after_commit(
    rotation, mailoutbox, django_capture_on_commit_callbacks, run_tasks_in_process, settings
):
    put_alice_on_call(rotation)
    settings.DEFAULT_FROM_EMAIL = "opsportal@ops.example.com"
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        created = notify(
            responsibility=Responsibility.ON_CALL,
            subject="Containers not starting",
            body="OOMKilled on api-1",
        )
        # Nothing leaves before the caller's transaction commits.
        assert mailoutbox == []
    assert len(callbacks) == len(created) == 3
    for callback in callbacks:
        callback()

    assert sorted(m.to[0] for m in mailoutbox) == [
        "alice@example.com",
        "alice@pager.example.com",
        "oncall@example.com",
    ]
    assert {m.subject for m in mailoutbox} == {"Containers not starting"}
    assert {m.body for m in mailoutbox} == {"OOMKilled on api-1"}
    assert {m.from_email for m in mailoutbox} == {"opsportal@ops.example.com"}
    for notification in Notification.objects.all():
        assert notification.status == NotificationStatus.SENT
        assert notification.attempts == 1
        assert notification.sent_at is not None
        assert notification.last_error == ""


def test_slack_webhook_receives_a_slack_compatible_payload(
    slack_webhook, http_server, django_capture_on_commit_callbacks, run_tasks_in_process
):
    notification = the_webhook(
        notify_and_deliver(
            django_capture_on_commit_callbacks,
            responsibility=Responsibility.ON_CALL,
            subject="High API response times",
            body="p95 is 812 ms on <api-1> & <api-2>",
        )
    )
    assert notification.status == NotificationStatus.SENT

    [(path, headers, payload)] = webhook_posts(http_server)
    assert path == f"/services/T0001/B0001/{WEBHOOK_TOKEN}"
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"] == "OpsPortal-notifier"
    # Slack's incoming-webhook shape: a fallback `text` and Block Kit blocks, with
    # <, > and & escaped so they are not read as links or mentions.
    escaped = "p95 is 812 ms on &lt;api-1&gt; &amp; &lt;api-2&gt;"
    assert payload["text"] == f"*High API response times*\n{escaped}"
    assert payload["blocks"] == [
        {"type": "header", "text": {"type": "plain_text", "text": "High API response times"}},
        {"type": "section", "text": {"type": "mrkdwn", "text": escaped}},
    ]


def test_slack_payload_without_a_body_has_no_empty_section(
    slack_webhook, http_server, django_capture_on_commit_callbacks, run_tasks_in_process
):
    notify_and_deliver(
        django_capture_on_commit_callbacks,
        responsibility=Responsibility.ON_CALL,
        subject="Maintenance starts",
    )
    [(_, _, payload)] = webhook_posts(http_server)
    assert payload == {
        "text": "*Maintenance starts*",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "Maintenance starts"}}
        ],
    }


def test_generic_webhook_receives_subject_body_and_context(
    on_call_team, http_server, django_capture_on_commit_callbacks, run_tasks_in_process
):
    WebhookChannel.objects.create(
        name="pager-bridge",
        team=on_call_team,
        format=WebhookFormat.GENERIC,
        url=http_server.url + "/hooks/generic",
    )
    notifications = notify_and_deliver(
        django_capture_on_commit_callbacks,
        responsibility=Responsibility.ON_CALL,
        subject="Too many connections",
        body="postgres-main at 98% of max_connections",
        about=on_call_team,
    )
    webhook = the_webhook(notifications)
    assert webhook.status == NotificationStatus.SENT

    [(path, _, payload)] = webhook_posts(http_server)
    assert path == "/hooks/generic"
    assert payload == {
        "subject": "Too many connections",
        "body": "postgres-main at 98% of max_connections",
        "responsibility": "on_call",
        "about": f"team:{on_call_team.pk}",
        "notification_id": webhook.pk,
    }


# ---------------------------------------------------------------- failures and retries


def test_failing_webhook_is_retried_with_backoff_then_ends_failed(
    slack_webhook,
    http_server,
    django_capture_on_commit_callbacks,
    run_tasks_in_process,
    settings,
):
    settings.NOTIFICATION_MAX_ATTEMPTS = 3
    http_server.behaviour.status = 500
    before = timezone.now()

    # The first attempt fails inside the caller's commit: notify() still returns normally.
    notification = the_webhook(
        notify_and_deliver(
            django_capture_on_commit_callbacks,
            responsibility=Responsibility.ON_CALL,
            subject="Security incident: isolate api-2",
        )
    )
    assert notification.status == NotificationStatus.PENDING
    assert notification.attempts == 1
    assert notification.last_error == "Webhook ops-alerts answered HTTP 500."
    assert before + retry_delay(1) <= notification.next_attempt_at
    assert notification.next_attempt_at <= timezone.now() + retry_delay(1)

    # Not due yet: the sweeper leaves it alone.
    first_retry = notification.next_attempt_at
    notifications_sweep(now=first_retry - SECOND)
    notification.refresh_from_db()
    assert notification.attempts == 1
    assert len(http_server.requests) == 1

    # Second attempt when due; the wait doubles.
    notifications_sweep(now=first_retry)
    notification.refresh_from_db()
    assert notification.attempts == 2
    assert notification.status == NotificationStatus.PENDING
    assert notification.next_attempt_at == first_retry + retry_delay(2)
    assert retry_delay(2) == 2 * retry_delay(1)

    # Third and last attempt: failed for good, and nothing is scheduled any more.
    notifications_sweep(now=notification.next_attempt_at)
    notification.refresh_from_db()
    assert notification.status == NotificationStatus.FAILED
    assert notification.attempts == 3
    assert notification.next_attempt_at is None
    assert len(http_server.requests) == 3

    notifications_sweep(now=timezone.now() + dt.timedelta(days=1))
    notification.refresh_from_db()
    assert notification.attempts == 3
    assert len(http_server.requests) == 3


def test_backoff_is_capped():
    assert [retry_delay(n).total_seconds() for n in range(1, 9)] == [
        30,
        60,
        120,
        240,
        480,
        960,
        1800,
        1800,
    ]


def test_webhook_on_a_closed_port_fails_without_raising_or_leaking_its_url(
    on_call_team, django_capture_on_commit_callbacks, run_tasks_in_process, settings
):
    settings.NOTIFICATION_MAX_ATTEMPTS = 1
    url = f"http://127.0.0.1:{free_port()}/services/T1/B1/{WEBHOOK_TOKEN}"
    WebhookChannel.objects.create(name="gone", team=on_call_team, url=url)

    notification = the_webhook(
        notify_and_deliver(
            django_capture_on_commit_callbacks,
            responsibility=Responsibility.ON_CALL,
            subject="Unreachable webhook",
        )
    )
    assert notification.status == NotificationStatus.FAILED
    assert notification.last_error == "Webhook gone is not reachable (ConnectionError)."
    assert WEBHOOK_TOKEN not in notification.last_error
    assert "127.0.0.1" not in notification.last_error


def test_email_to_an_unreachable_mail_server_is_a_failed_attempt(
    on_call_team, django_capture_on_commit_callbacks, run_tasks_in_process, settings
):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", free_port(), 2
    [notification] = notify_and_deliver(
        django_capture_on_commit_callbacks,
        responsibility=Responsibility.ON_CALL,
        subject="Mail server down",
    )
    assert notification.status == NotificationStatus.PENDING
    assert notification.attempts == 1
    assert notification.last_error.startswith("Email to oncall@example.com failed:")
    assert "refused" in notification.last_error.lower()


def test_a_webhook_whose_url_no_longer_decrypts_fails_alone(
    slack_webhook,
    mailoutbox,
    http_server,
    django_capture_on_commit_callbacks,
    run_tasks_in_process,
    settings,
):
    """After the encryption keys were changed without re-entering the URL, the team's
    email is still sent and the webhook ends failed with a message saying why."""
    settings.NOTIFICATION_MAX_ATTEMPTS = 2
    settings.SECRETS_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    fields._fernet.cache_clear()
    try:
        notifications = notify_and_deliver(
            django_capture_on_commit_callbacks,
            responsibility=Responsibility.ON_CALL,
            subject="Keys rotated",
        )
        by_channel = {n.channel: n for n in notifications}
        assert by_channel[NotificationChannelKind.EMAIL].status == NotificationStatus.SENT
        webhook = by_channel[NotificationChannelKind.WEBHOOK]
        assert webhook.status == NotificationStatus.PENDING
        assert webhook.last_error == "Delivery failed: SecretDecryptionError."

        notifications_sweep(now=webhook.next_attempt_at)
        webhook.refresh_from_db()
        assert webhook.status == NotificationStatus.FAILED
        assert webhook.attempts == 2
    finally:
        fields._fernet.cache_clear()
    assert [m.to for m in mailoutbox] == [["oncall@example.com"]]
    assert http_server.requests == []


# ---------------------------------------------------------------- the sweeper


def test_sweeper_delivers_a_notification_whose_message_was_lost(
    on_call_team, mailoutbox, django_capture_on_commit_callbacks
):
    # The broker was down: the row was committed but its message never reached a worker.
    with django_capture_on_commit_callbacks(execute=False):
        [notification] = notify(responsibility=Responsibility.ON_CALL, subject="Lost message")
    notification.refresh_from_db()
    assert notification.status == NotificationStatus.PENDING
    assert notification.next_attempt_at is None

    # A fresh row may still be on its way to a worker: not yet.
    assert notifications_sweep(now=notification.created_at + UNDISPATCHED_AFTER / 2) == 0
    assert mailoutbox == []

    # Once it is clearly lost, the scheduled sweep (run as its real task) delivers it.
    with_time = notification.created_at + UNDISPATCHED_AFTER + SECOND
    assert notifications_sweep(now=with_time) == 1
    notification.refresh_from_db()
    assert notification.status == NotificationStatus.SENT
    assert [m.subject for m in mailoutbox] == ["Lost message"]
    assert sweep_notifications.apply().get() == 0


def test_a_redelivered_message_sends_once(
    on_call_team, mailoutbox, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        [notification] = notify(responsibility=Responsibility.ON_CALL, subject="Once")
    deliver_notification.apply(args=[notification.pk]).get()
    deliver_notification.apply(args=[notification.pk]).get()  # the broker redelivered it
    assert notification_deliver(notification_id=notification.pk) is None
    assert len(mailoutbox) == 1
    notification.refresh_from_db()
    assert notification.attempts == 1


def test_sweeper_retakes_a_claim_whose_worker_died(
    on_call_team, mailoutbox, django_capture_on_commit_callbacks
):
    """A worker claimed the row (status sending) and died before finishing: after the
    claim's timeout the sweeper sends it."""
    with django_capture_on_commit_callbacks(execute=False):
        [notification] = notify(responsibility=Responsibility.ON_CALL, subject="Worker died")

    # Stand in for the dying worker: claim the row the way notification_deliver does,
    # then stop before sending.
    from opsportal.people import services

    now = timezone.now()
    assert Notification.objects.filter(
        pk=notification.pk, status=NotificationStatus.PENDING
    ).update(
        status=NotificationStatus.SENDING, next_attempt_at=now + services.SENDING_CLAIM_TIMEOUT
    )
    assert notifications_sweep(now=now + SECOND) == 0  # the claim may still be live
    notification.refresh_from_db()
    assert notification.status == NotificationStatus.SENDING

    notifications_sweep(now=now + services.SENDING_CLAIM_TIMEOUT + SECOND)
    notification.refresh_from_db()
    assert notification.status == NotificationStatus.SENT
    assert [m.subject for m in mailoutbox] == ["Worker died"]


def test_sweep_stops_starting_deliveries_when_out_of_time(
    on_call_team, django_capture_on_commit_callbacks, settings, monkeypatch
):
    """Webhooks that hang until their timeout must not push the sweep past its task's
    time limit: it stops in time and leaves the rest for the next sweep."""
    from opsportal.people import services
    from tests.realsystems import silent_listener

    settings.NOTIFICATION_WEBHOOK_TIMEOUT = 0.4
    monkeypatch.setattr(services, "SWEEP_BUDGET_SECONDS", 1.0)
    with silent_listener() as port:
        for i in range(6):
            WebhookChannel.objects.create(
                name=f"hung-{i}", team=on_call_team, url=f"http://127.0.0.1:{port}/hook/{i}"
            )
        with django_capture_on_commit_callbacks(execute=False):
            created = notify(responsibility=Responsibility.ON_CALL, subject="Hung webhooks")
        webhooks = [n.pk for n in created if n.channel == NotificationChannelKind.WEBHOOK]
        assert len(webhooks) == 6

        started = timezone.now()
        notifications_sweep(now=started + UNDISPATCHED_AFTER + SECOND)
        elapsed = (timezone.now() - started).total_seconds()

    attempted = Notification.objects.filter(pk__in=webhooks, attempts=1)
    untouched = Notification.objects.filter(pk__in=webhooks, attempts=0)
    assert elapsed < 1.0 + 0.4 + 0.5
    assert 1 <= attempted.count() < 6
    assert untouched.count() == 6 - attempted.count()
    assert {n.last_error for n in attempted} == {
        f"Webhook {n.webhook.name} did not answer within 0.4 s." for n in attempted
    }
    assert set(untouched.values_list("status", flat=True)) == {NotificationStatus.PENDING}
