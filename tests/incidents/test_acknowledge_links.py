"""Acknowledge from the message: the page arrives at a real SMTP server, the test follows
its Acknowledge link (no session), the escalation stops; a second use, an expired, a
changed or another incident's link is refused and changes nothing. Chat pages reach a real
HTTP server in Slack's format with the links as buttons. Everyone paged hears when the
incident is acknowledged and resolved."""

from __future__ import annotations

import datetime as dt
import email
import json
import re

import pytest
from django.test import Client
from django.utils import timezone

from incidents.models import AcknowledgeLink, EscalationStatus, Incident, Severity, Status
from incidents.services import incident_open, incident_resolve
from incidents.services.acknowledge import acknowledge_link_create
from incidents.services.escalation import escalations_sweep
from opsportal.audit.models import AuditRecord
from opsportal.celery import app as celery_app
from opsportal.people.models import Notification, WebhookChannel, WebhookFormat
from tests import realsystems

MINUTE = dt.timedelta(minutes=1)
ACK_LINK = re.compile(
    r"^Acknowledge: (http://portal\.test(/incidents/\d+/acknowledge/[^/\s]+/))", re.M
)


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


@pytest.fixture
def deliver_at_once():
    """Deliveries queued after commit run right away in this process (Celery's eager mode):
    the code path a worker runs, without a broker round trip."""
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = False


def open_and_deliver(django_capture_on_commit_callbacks, **kwargs) -> Incident:
    with django_capture_on_commit_callbacks(execute=True):
        return incident_open(category="other", **{"severity": Severity.SEV1, **kwargs})


def mails_to(smtp, address: str) -> list[email.message.Message]:
    found = []
    for message in smtp.messages:
        if address in message["to"]:
            found.append(email.message_from_string(message["data"]))
    return found


def text(message: email.message.Message) -> str:
    return message.get_payload(decode=True).decode()


def ack_path(message: email.message.Message) -> str:
    [(_, path)] = ACK_LINK.findall(text(message))
    return path


def test_acknowledging_from_the_email_stops_the_escalation_and_works_once(
    paging, smtp, deliver_at_once, django_capture_on_commit_callbacks
):
    incident = open_and_deliver(django_capture_on_commit_callbacks, title="Checkout API down")
    [page] = mails_to(smtp, "alice@example.com")
    assert page["Subject"] == f"[SEV1] New incident: Checkout API down (incident #{incident.pk})"
    body = text(page)
    assert (
        f"Open the incident: http://portal.test/admin/incidents/incident/{incident.pk}/change/"
        in body
    )
    path = ack_path(page)

    visitor = Client()  # no session: the link is the credential for this one action
    shown = visitor.get(path)
    assert shown.status_code == 200
    assert "Acknowledge it as <strong>Alice</strong>" in shown.content.decode()
    incident.refresh_from_db()
    assert incident.status == Status.OPEN  # opening the link (a mail scanner) changes nothing

    with django_capture_on_commit_callbacks(execute=True):
        done = visitor.post(path)
    assert done.status_code == 200
    assert "acknowledged</strong> as Alice" in done.content.decode()
    incident.refresh_from_db()
    assert incident.status == Status.ACKNOWLEDGED and incident.acknowledged_at is not None
    assert incident.commander.get_username() == "alice"
    escalation = incident.escalations.get()
    assert escalation.status == EscalationStatus.ACKNOWLEDGED
    assert escalation.stopped_by == "Alice"
    record = AuditRecord.objects.filter(message__startswith="Incident acknowledged").get()
    assert (record.source, record.actor_name) == ("link", "alice")
    assert "from the acknowledge link sent to Alice" in record.message

    # Nobody else is paged, however long we wait.
    escalations_sweep(now=escalation.started_at + 120 * MINUTE)
    assert Notification.objects.filter(recipient="dave@example.com").count() == 0
    # Those paged hear who acknowledged, on the channels they were paged on.
    subjects = [m["Subject"] for m in mails_to(smtp, "alice@pager.example.com")]
    assert (
        subjects[-1] == f"[SEV1] Acknowledged by Alice: Checkout API down (incident #{incident.pk})"
    )

    again = visitor.get(path)
    assert again.status_code == 410
    assert "already used" in again.content.decode()
    assert visitor.post(path).status_code == 410
    assert AuditRecord.objects.filter(message__startswith="Incident acknowledged").count() == 1


def test_an_expired_link_is_refused_and_changes_nothing(paging, django_capture_on_commit_callbacks):
    incident = open_and_deliver(django_capture_on_commit_callbacks, title="Disk full")
    url = acknowledge_link_create(
        incident=incident, contact=paging["alice"], now=timezone.now() - 61 * MINUTE
    )
    path = url.removeprefix("http://portal.test")
    for response in (Client().get(path), Client().post(path)):
        assert response.status_code == 410
        assert "expired at" in response.content.decode()
    incident.refresh_from_db()
    assert incident.status == Status.OPEN
    assert incident.escalations.get().status == EscalationStatus.ACTIVE


def test_a_changed_link_is_refused(paging, django_capture_on_commit_callbacks):
    incident = open_and_deliver(django_capture_on_commit_callbacks, title="Disk full")
    path = acknowledge_link_create(incident=incident, contact=paging["alice"]).removeprefix(
        "http://portal.test"
    )
    token = path.rstrip("/").rsplit("/", 1)[1]
    # Another person's id in the signed part, or a changed signature.
    forged = token.replace(token[5], "A" if token[5] != "A" else "B", 1)
    for bad in (forged, token[:-3], "garbage"):
        response = Client().post(path.replace(token, bad))
        assert response.status_code == 400
        assert "not valid" in response.content.decode()
    incident.refresh_from_db()
    assert incident.status == Status.OPEN
    assert not AcknowledgeLink.objects.filter(used_at__isnull=False).exists()


def test_a_link_for_another_incident_is_refused(paging, django_capture_on_commit_callbacks):
    first = open_and_deliver(django_capture_on_commit_callbacks, title="First")
    second = open_and_deliver(django_capture_on_commit_callbacks, title="Second")
    path = acknowledge_link_create(incident=first, contact=paging["alice"]).removeprefix(
        "http://portal.test"
    )
    wrong = path.replace(f"/incidents/{first.pk}/", f"/incidents/{second.pk}/")
    response = Client().post(wrong)
    assert response.status_code == 400
    assert f"belongs to incident #{first.pk}, not to incident #{second.pk}" in (
        response.content.decode()
    )
    assert set(Incident.objects.values_list("status", flat=True)) == {Status.OPEN}


def test_a_link_to_an_incident_someone_acknowledged_already_changes_nothing(
    paging, django_capture_on_commit_callbacks
):
    from incidents.services import incident_acknowledge

    incident = open_and_deliver(django_capture_on_commit_callbacks, title="Disk full")
    path = acknowledge_link_create(incident=incident, contact=paging["alice"]).removeprefix(
        "http://portal.test"
    )
    incident_acknowledge(incident=incident, actor=paging["erin"])
    response = Client().post(path)
    assert response.status_code == 400
    assert "already acknowledged" in response.content.decode()
    incident.refresh_from_db()
    assert incident.commander == paging["erin"]
    assert not AcknowledgeLink.objects.filter(used_at__isnull=False).exists()


def test_chat_pages_carry_acknowledge_and_open_buttons_and_follow_ups(
    paging, http_server, deliver_at_once, django_capture_on_commit_callbacks
):
    WebhookChannel.objects.create(
        name="ops-alerts",
        team=paging["alice"].team,
        format=WebhookFormat.SLACK,
        url=f"{http_server.url}/services/T1/B1/token",
    )
    incident = open_and_deliver(django_capture_on_commit_callbacks, title="Checkout API down")
    [(_, _, raw)] = [r for r in http_server.requests if len(r) == 3]
    payload = json.loads(raw)
    [actions] = [b for b in payload["blocks"] if b["type"] == "actions"]
    acknowledge, open_it = actions["elements"]
    assert acknowledge["type"] == "button" and acknowledge["style"] == "primary"
    assert acknowledge["text"] == {"type": "plain_text", "text": "Acknowledge (as Alice)"}
    assert acknowledge["url"].startswith(f"http://portal.test/incidents/{incident.pk}/acknowledge/")
    assert open_it["text"]["text"] == "Open the incident"
    assert open_it["url"] == f"http://portal.test/admin/incidents/incident/{incident.pk}/change/"

    # The button opens the link in the reader's browser: the same page as the email's.
    path = acknowledge_link_create(incident=incident, contact=paging["alice"])
    with django_capture_on_commit_callbacks(execute=True):
        assert Client().post(path.removeprefix("http://portal.test")).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        incident_resolve(incident=incident, actor=paging["erin"], resolution="Rolled back")
    posts = [json.loads(r[2]) for r in http_server.requests if len(r) == 3]
    assert [p["blocks"][0]["text"]["text"] for p in posts[1:]] == [
        f"[SEV1] Acknowledged by Alice: Checkout API down (incident #{incident.pk})",
        f"[SEV1] Resolved by erin: Checkout API down (incident #{incident.pk})",
    ]


def test_a_sev1_opened_by_an_alert_reaches_a_second_person_and_stops_when_they_acknowledge(
    paging, smtp, deliver_at_once, django_capture_on_commit_callbacks
):
    """The issue's "done means": a SEV1 opened by an alert, not answered by the on-call,
    reaches a second person within the policy's time, and stops the moment that person
    acknowledges from the email."""
    from incidents.services import alert_receive

    with django_capture_on_commit_callbacks(execute=True):
        alert = alert_receive(
            fingerprint="checkout-5xx",
            status="firing",
            title="Checkout API answers 5xx",
            severity=Severity.SEV1,
            category="other",
            source="alertmanager",
        )
    incident = alert.incident
    escalation = incident.escalations.get()
    t0 = escalation.started_at
    assert len(mails_to(smtp, "alice@example.com")) == 1  # the on-call, at once
    assert mails_to(smtp, "dave@example.com") == []

    for minutes in (5, 20):  # Alice again, then the DevOps team
        with django_capture_on_commit_callbacks(execute=True):
            escalations_sweep(now=t0 + minutes * MINUTE)
    assert len(mails_to(smtp, "alice@example.com")) == 2
    [second_person_page] = mails_to(smtp, "dave@example.com")
    assert second_person_page["Subject"].startswith("[SEV1] Not acknowledged yet")

    with django_capture_on_commit_callbacks(execute=True):
        done = Client().post(ack_path(second_person_page))
    assert done.status_code == 200
    incident.refresh_from_db()
    escalation.refresh_from_db()
    assert incident.status == Status.ACKNOWLEDGED
    assert (escalation.status, escalation.stopped_by) == (EscalationStatus.ACKNOWLEDGED, "Dave")

    pages_to_dave = len(mails_to(smtp, "dave@example.com"))
    for minutes in (35, 50, 65, 600):
        with django_capture_on_commit_callbacks(execute=True):
            escalations_sweep(now=t0 + minutes * MINUTE)
    later = [m["Subject"] for m in mails_to(smtp, "dave@example.com")[pages_to_dave:]]
    assert not any(s.startswith("[SEV1] Not acknowledged yet") for s in later)
