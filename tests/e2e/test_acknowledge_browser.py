"""A person acknowledges from the email in a browser: the page arrives at a real SMTP
server, they open its Acknowledge link (not signed in), click Acknowledge, and the incident
page shows who acknowledged and when; nobody else is paged."""

from __future__ import annotations

import datetime as dt
import email
import re

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone
from django.utils.formats import date_format

from incidents.models import Incident, Severity
from incidents.services import incident_open
from incidents.services.escalation import escalations_sweep
from opsportal.access import groups_load_defaults
from opsportal.celery import app as celery_app
from opsportal.people.models import Notification
from tests import realsystems
from tests.incidents.conftest import set_up_paging
from tests.signin import sign_in

pytestmark = pytest.mark.browser


def test_the_on_call_acknowledges_from_the_email_and_the_incident_says_who_and_when(
    live_server, page, settings, transactional_db
):
    settings.PORTAL_URL = live_server.url
    people = set_up_paging()
    groups_load_defaults()
    people["erin"].groups.add(Group.objects.get(name="On-call engineers"))
    with realsystems.smtp_server() as smtp:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", smtp.port
        settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
        settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
        celery_app.conf.task_always_eager = True  # deliver in this process
        try:
            incident = incident_open(
                title="Checkout API down", severity=Severity.SEV1, category="other"
            )
        finally:
            celery_app.conf.task_always_eager = False
        [mail] = [m for m in smtp.messages if "alice@example.com" in m["to"]]
    body = email.message_from_string(mail["data"]).get_payload(decode=True).decode()
    [link] = re.findall(r"^Acknowledge: (\S+)", body, re.M)

    page.goto(link)
    assert "Acknowledge it as Alice?" in page.inner_text("#acknowledge-link")
    page.click("#link-acknowledge")
    page.wait_for_selector("#link-acknowledged")
    assert "Escalation has stopped" in page.inner_text("#link-acknowledged")

    incident.refresh_from_db()
    assert incident.status == "acknowledged"
    escalations_sweep(now=incident.acknowledged_at + dt.timedelta(hours=2))
    assert not Notification.objects.filter(recipient="dave@example.com").exists()

    sign_in(page, live_server.url, "erin", "pw-erin-123!")
    page.goto(f"{live_server.url}/admin/incidents/incident/{incident.pk}/change/")
    timeline = page.inner_text("#incident-timeline")
    assert (
        "Open → Acknowledged (acknowledged by Alice): from the acknowledge link sent to Alice"
        in timeline
    )
    assert (
        "Escalation by 'SEV1 (urgent)' stopped (acknowledged by Alice); 5 planned page(s)"
        in timeline
    )
    # When: the incident's own "Acknowledged at" (shown in the admin's format).
    shown = page.inner_text("div.field-acknowledged_at")
    assert (
        "Acknowledged at:\n"
        + date_format(timezone.localtime(incident.acknowledged_at), "DATETIME_FORMAT")
        in shown
    )
    assert Incident.objects.get(pk=incident.pk).commander.get_username() == "alice"
