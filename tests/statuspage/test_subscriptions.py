"""Email subscriptions on the public page, with real mail through a local SMTP server: double
opt-in, one-click unsubscribe, per-component scope, incident public updates and maintenance
announcements to subscribers, retries when the mail server is down, and every kind of bad
input answered with a clear page that changes nothing it should not."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.test import Client
from django.utils import timezone

from incidents.services import incident_open, incident_public_update_post, incident_publish
from maintenance.services import (
    window_cancel,
    window_finish,
    window_start,
    window_update,
    windows_announce_due,
)
from opsportal.people.models import Notification, NotificationStatus
from opsportal.people.services import notification_deliver
from opsportal.statuspage.models import Subscriber
from tests import realsystems
from tests.statuspage.conftest import deliver_pending, mails_to

BASE = "http://127.0.0.1:8000"


def link_in(mail: str, part: str) -> str:
    found = re.search(rf"{re.escape(BASE)}(/status/{part}/\S+/)", mail)
    assert found, mail
    return found.group(1)


def subscribe(smtp, address: str, *components) -> Subscriber:
    """The whole double opt-in, as a visitor does it."""
    client = Client()
    response = client.post(
        "/status/subscribe/", {"email": address, "components": [c.pk for c in components]}
    )
    assert response.status_code == 200 and b"Check your inbox" in response.content
    deliver_pending()
    confirm = link_in(mails_to(smtp, address)[-1], "subscribe/confirm")
    page = client.get(confirm)
    assert page.status_code == 200 and b"Confirm your subscription" in page.content
    done = client.post(confirm)
    assert done.status_code == 200 and b"Subscribed" in done.content
    return Subscriber.objects.get(email=address)


def test_double_opt_in_and_one_click_unsubscribe(smtp, components):
    client = Client()
    client.post("/status/subscribe/", {"email": "ann@example.org"})
    deliver_pending()
    (mail,) = mails_to(smtp, "ann@example.org")
    assert "Confirm your subscription" in mail
    subscriber = Subscriber.objects.get(email="ann@example.org")
    assert subscriber.confirmed_at is None  # nothing is sent before the link is opened
    confirm = link_in(mail, "subscribe/confirm")
    client.post(confirm)
    subscriber.refresh_from_db()
    assert subscriber.confirmed_at is not None
    # The link used again: a clear page, nothing changes.
    again = client.post(confirm)
    assert again.status_code == 200 and b"Already confirmed" in again.content

    unsubscribe = f"/status/unsubscribe/{subscriber.token}/"
    assert b"Unsubscribe" in client.get(unsubscribe).content
    assert Subscriber.objects.filter(pk=subscriber.pk).exists()  # a GET changes nothing
    # One click from the mail client: a POST without any CSRF token (RFC 8058).
    strict = Client(enforce_csrf_checks=True)
    response = strict.post(unsubscribe)
    assert response.status_code == 200 and b"Unsubscribed" in response.content
    assert not Subscriber.objects.filter(email="ann@example.org").exists()
    reused = strict.post(unsubscribe)
    assert reused.status_code == 404 and b"not valid" in reused.content
    gone = client.post(confirm)
    assert gone.status_code == 404 and b"no longer exists" in gone.content


def test_subscribing_twice_changes_nothing(smtp, components):
    subscriber = subscribe(smtp, "bob@example.org", components["API"])
    confirmed_at = subscriber.confirmed_at
    response = Client().post(
        "/status/subscribe/",
        {"email": "Bob@Example.org", "components": [components["Database"].pk]},
    )
    assert response.status_code == 200 and b"Check your inbox" in response.content
    deliver_pending()
    assert "already subscribed" in mails_to(smtp, "bob@example.org")[-1]
    subscriber.refresh_from_db()
    assert subscriber.confirmed_at == confirmed_at
    assert list(subscriber.components.all()) == [components["API"]]
    assert Subscriber.objects.count() == 1


@pytest.mark.parametrize(
    ("address", "says"),
    [
        ("not-an-address", b"does not look like an email address"),
        ("two@@example.org", b"does not look like an email address"),
        ("", b"does not look like an email address"),
        ("x@mailinator.com", b"throwaway mail services"),
        ("x@eu.yopmail.com", b"throwaway mail services"),
    ],
)
def test_bad_addresses_get_a_clear_page(components, address, says):
    response = Client().post("/status/subscribe/", {"email": address})
    assert response.status_code == 400
    assert says in response.content
    assert not Subscriber.objects.exists() and not Notification.objects.exists()


@pytest.mark.parametrize("component_id", ["999999", "abc", "1 OR 1=1"])
def test_unknown_component_ids_get_a_clear_page(components, component_id):
    response = Client().post(
        "/status/subscribe/", {"email": "cat@example.org", "components": [component_id]}
    )
    assert response.status_code == 400
    assert b"There is no component" in response.content
    assert not Subscriber.objects.exists()


def test_forged_confirmation_links_are_refused(smtp, components):
    client = Client()
    client.post("/status/subscribe/", {"email": "dan@example.org"})
    deliver_pending()
    confirm = link_in(mails_to(smtp, "dan@example.org")[-1], "subscribe/confirm")
    token = confirm.rstrip("/").rsplit("/", 1)[1]
    forged = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    for path in (f"/status/subscribe/confirm/{forged}/", "/status/subscribe/confirm/garbage/"):
        assert client.get(path).status_code == 400
        response = client.post(path)
        assert response.status_code == 400 and b"not valid" in response.content
    assert Subscriber.objects.get(email="dan@example.org").confirmed_at is None
    response = client.post("/status/unsubscribe/not-a-real-token/")
    assert response.status_code == 404 and b"Nothing was changed" in response.content
    assert Subscriber.objects.count() == 1


def test_an_expired_confirmation_link_is_refused(smtp, components, settings):
    from opsportal.statuspage import services

    client = Client()
    client.post("/status/subscribe/", {"email": "eve@example.org"})
    deliver_pending()
    confirm = link_in(mails_to(smtp, "eve@example.org")[-1], "subscribe/confirm")
    original = services.CONFIRM_MAX_AGE
    services.CONFIRM_MAX_AGE = dt.timedelta(seconds=-1)
    try:
        response = client.post(confirm)
    finally:
        services.CONFIRM_MAX_AGE = original
    assert response.status_code == 400 and b"expired" in response.content


def test_subscribe_requests_are_rate_limited_per_address_and_per_client(smtp, components, settings):
    settings.STATUS_PAGE_SUBSCRIBE_PER_ADDRESS = 2
    settings.STATUS_PAGE_SUBSCRIBE_PER_CLIENT = 4
    client = Client()
    for _ in range(2):
        assert client.post("/status/subscribe/", {"email": "fay@example.org"}).status_code == 200
    third = client.post("/status/subscribe/", {"email": "fay@example.org"})
    assert third.status_code == 429 and b"several messages" in third.content
    for address in ("gus@example.org", "ida@example.org"):
        assert client.post("/status/subscribe/", {"email": address}).status_code == 200
    # The client has made 4 requests that passed the address check: the next is refused.
    refused = client.post("/status/subscribe/", {"email": "hal@example.org"})
    assert refused.status_code == 429 and b"from your network" in refused.content
    other = Client(REMOTE_ADDR="10.9.8.7")
    assert other.post("/status/subscribe/", {"email": "hal@example.org"}).status_code == 200
    assert Notification.objects.filter(recipient="fay@example.org").count() == 2


def test_public_updates_reach_the_subscribers_of_their_components(smtp, components, responder):
    everything = subscribe(smtp, "all@example.org")
    database = subscribe(smtp, "db@example.org", components["Database"])
    api = subscribe(smtp, "api@example.org", components["API"])
    Client().post("/status/subscribe/", {"email": "unconfirmed@example.org"})
    deliver_pending()
    smtp.messages.clear()

    incident = incident_open(
        title="internal", severity="sev2", category="database", reporter=responder
    )
    public = incident_publish(
        incident=incident,
        title="Slow database queries",
        components=[components["Database"]],
        actor=responder,
    )
    incident_public_update_post(
        public_incident=public,
        status="identified",
        message="A connection pool is exhausted.",
        actor=responder,
    )
    deliver_pending()
    for subscriber in (everything, database):
        (mail,) = mails_to(smtp, subscriber.email)
        assert "[Identified] Slow database queries" in mail
        assert "A connection pool is exhausted." in mail
        assert f"/status/unsubscribe/{subscriber.token}/" in mail
    assert mails_to(smtp, api.email) == []
    assert mails_to(smtp, "unconfirmed@example.org") == []


def test_maintenance_announcements_reach_subscribers(
    smtp, components, public_window, devops, settings
):
    # The test starts a window days before its planned start ("start now"), which the
    # early-start bound refuses by default; the bound has tests of its own.
    settings.MAINTENANCE_EARLY_START_MINUTES = 4 * 24 * 60
    database = subscribe(smtp, "db@example.org", components["Database"])
    api = subscribe(smtp, "api@example.org", components["API"])
    smtp.messages.clear()
    window = public_window(starts_in=dt.timedelta(hours=70), affects=["Database"])
    private = public_window(starts_in=dt.timedelta(hours=70), public=False)

    assert windows_announce_due() == 2  # the 72 h announcement of both windows
    deliver_pending()
    (lead,) = mails_to(smtp, database.email)
    assert "Planned maintenance: Database upgrade" in lead
    assert "Writes pause for up to five minutes." in lead
    assert "Affected: Database" in lead
    assert window.title not in lead and private.title not in lead
    assert mails_to(smtp, api.email) == []

    # A day ahead of the start: the 24 h announcement of both windows, to the subscriber too.
    assert windows_announce_due(now=timezone.now() + dt.timedelta(hours=47)) == 2
    deliver_pending()
    (_, day_ahead) = mails_to(smtp, database.email)
    assert "Database upgrade" in day_ahead and window.title not in day_ahead
    assert mails_to(smtp, api.email) == []

    window.starts_at += dt.timedelta(hours=1)
    window.ends_at += dt.timedelta(hours=1)
    window_update(window=window, actor=devops)
    window_start(window=window, actor=devops, override_reason="test: start now")
    window_finish(window=window, actor=devops)
    deliver_pending()
    subjects = [
        re.search(r"^Subject: (.*)$", m, re.M).group(1).strip()
        for m in mails_to(smtp, database.email)
    ]
    assert subjects == [
        "Planned maintenance: Database upgrade",
        "Planned maintenance: Database upgrade",
        "Maintenance moved: Database upgrade",
        "Maintenance started: Database upgrade",
        "Maintenance ended: Database upgrade",
    ]

    other = public_window(starts_in=dt.timedelta(hours=20), affects=["Database"])
    windows_announce_due()
    window_cancel(window=other, actor=devops, reason="not needed")
    deliver_pending()
    assert "Maintenance cancelled: Database upgrade" in mails_to(smtp, database.email)[-1]
    assert mails_to(smtp, api.email) == []


def test_a_mail_server_that_is_down_loses_nothing_and_blocks_nothing(
    smtp, components, responder, settings
):
    subscriber = subscribe(smtp, "fiona@example.org")
    smtp.messages.clear()
    incident = incident_open(title="internal", severity="sev3", category="api", reporter=responder)
    public = incident_publish(incident=incident, title="Slow API", actor=responder)
    settings.EMAIL_PORT = realsystems.free_port()  # nothing listens there
    update = incident_public_update_post(
        public_incident=public, status="investigating", message="Looking.", actor=responder
    )
    assert update.pk  # the workflow went on
    (notification,) = deliver_pending()
    assert notification.status == NotificationStatus.PENDING
    assert (
        notification.attempts == 1
        and "Email to fiona@example.org failed" in notification.last_error
    )
    assert notification.next_attempt_at > timezone.now()

    settings.EMAIL_PORT = smtp.port  # the server is back; the retry is due later
    notification_deliver(
        notification_id=notification.pk, now=notification.next_attempt_at + dt.timedelta(seconds=1)
    )
    notification.refresh_from_db()
    assert notification.status == NotificationStatus.SENT
    (mail,) = mails_to(smtp, subscriber.email)
    assert "Looking." in mail
