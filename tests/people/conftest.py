"""Teams, contacts and webhooks as the runbook's contact list has them, set up the way the
admin does (model saves), plus helpers to deliver the notifications `notify()` queues."""

from __future__ import annotations

import datetime as dt

import pytest

from opsportal.people.models import (
    Contact,
    OnCallRotation,
    Responsibility,
    RotationMember,
    Team,
    WebhookChannel,
    WebhookFormat,
)

# A webhook URL carries its token in the path, like Slack's /services/T…/B…/<token>.
WEBHOOK_TOKEN = "xoxb-SECRET-hook-token-7f3a9c"
HANDOFF = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
def on_call_team(db) -> Team:
    return Team.objects.create(
        name="On-call engineers", responsibility=Responsibility.ON_CALL, email="oncall@example.com"
    )


@pytest.fixture
def rotation(on_call_team) -> OnCallRotation:
    """Alice, Bob and Carol take 12-hour turns starting at HANDOFF."""
    rotation = OnCallRotation.objects.create(
        name="Primary on-call", team=on_call_team, shift_hours=12, handoff_at=HANDOFF
    )
    for position, name in enumerate(["Alice", "Bob", "Carol"]):
        contact = Contact.objects.create(
            name=name,
            team=on_call_team,
            email=f"{name.lower()}@example.com",
            pager_email=f"{name.lower()}@pager.example.com",
            phone=f"+1555000{position}",
        )
        RotationMember.objects.create(rotation=rotation, contact=contact, position=position)
    return rotation


def contact(name: str) -> Contact:
    return Contact.objects.get(name=name)


@pytest.fixture
def webhook_url(http_server) -> str:
    return f"{http_server.url}/services/T0001/B0001/{WEBHOOK_TOKEN}"


@pytest.fixture
def slack_webhook(on_call_team, webhook_url) -> WebhookChannel:
    return WebhookChannel.objects.create(
        name="ops-alerts", team=on_call_team, format=WebhookFormat.SLACK, url=webhook_url
    )
