"""Issue #17, on-call and notification channels: one bad rotation cannot take the admin home
page down, shifts are bounded, and a malformed webhook URL is a form error, not a 500."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse

from opsportal.monitoring import selectors as monitoring_selectors
from opsportal.people.models import MAX_SHIFT_HOURS, OnCallRotation, WebhookChannel
from opsportal.people.selectors import on_call_now
from tests.people.conftest import HANDOFF

pytestmark = pytest.mark.django_db


def rotation_form(team, **changes) -> dict:
    form = {
        "name": "Secondary",
        "team": team.pk,
        "shift_hours": "12",
        "handoff_at_0": "2026-01-05",
        "handoff_at_1": "09:00:00",
        "memberships-TOTAL_FORMS": "0",
        "memberships-INITIAL_FORMS": "0",
        "overrides-TOTAL_FORMS": "0",
        "overrides-INITIAL_FORMS": "0",
    }
    form.update(changes)
    return form


@pytest.mark.parametrize("hours", ["99999999999", str(MAX_SHIFT_HOURS + 1), "0", "-5", "1e3"])
def test_shift_hours_out_of_bounds_are_a_form_error(staff_client, on_call_team, hours):
    response = staff_client.post(
        reverse("admin:people_oncallrotation_add"), rotation_form(on_call_team, shift_hours=hours)
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["shift_hours"]
    assert not OnCallRotation.objects.filter(name="Secondary").exists()


def test_the_shift_bound_is_in_the_help_text(staff_client):
    page = staff_client.get(reverse("admin:people_oncallrotation_add")).content.decode()
    assert f"1 to {MAX_SHIFT_HOURS} hours" in page


def test_a_rotation_with_the_largest_stored_shift_keeps_the_home_page_and_list_up(
    staff_client, rotation
):
    # As a row saved before the bound (or by hand in the database) may hold.
    OnCallRotation.objects.filter(pk=rotation.pk).update(
        shift_hours=2_147_483_647, handoff_at=HANDOFF - dt.timedelta(days=3650)
    )
    rotation.refresh_from_db()
    assert on_call_now(rotation=rotation) is not None
    assert staff_client.get(reverse("admin:index")).status_code == 200
    assert staff_client.get(reverse("admin:people_oncallrotation_changelist")).status_code == 200


def test_a_failing_overview_panel_is_named_and_the_page_still_renders(staff_client, rotation):
    def broken(**kwargs):
        raise OverflowError("date value out of range")

    monitoring_selectors.overview_section_register("Broken panel", broken)
    try:
        response = staff_client.get(reverse("admin:index"))
    finally:
        monitoring_selectors._overview_sections.pop("Broken panel")
    assert response.status_code == 200
    page = response.content.decode()
    assert "Could not be shown just now: Broken panel" in page
    assert rotation.name in page  # the other panels are still there


@pytest.mark.parametrize(
    "url",
    [
        "http://[::1",
        "http://[::1]:99999/x",
        "https://host:port/x",
        "http://exa mple.com/",
        "http:///x",
    ],
)
def test_a_malformed_webhook_url_is_a_form_error(staff_client, on_call_team, url):
    response = staff_client.post(
        reverse("admin:people_webhookchannel_add"),
        {"name": "bad", "team": on_call_team.pk, "format": "slack", "url": url},
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["url"]
    assert not WebhookChannel.objects.filter(name="bad").exists()


def test_a_malformed_webhook_url_in_the_team_inline_is_a_form_error(staff_client, on_call_team):
    response = staff_client.post(
        reverse("admin:people_team_change", args=[on_call_team.pk]),
        {
            "name": on_call_team.name,
            "responsibility": on_call_team.responsibility,
            "email": on_call_team.email,
            "contacts-TOTAL_FORMS": "0",
            "contacts-INITIAL_FORMS": "0",
            "webhooks-TOTAL_FORMS": "1",
            "webhooks-INITIAL_FORMS": "0",
            "webhooks-0-name": "room",
            "webhooks-0-format": "slack",
            "webhooks-0-url": "http://[::1",
            "webhooks-0-active": "on",
        },
    )
    assert response.status_code == 200
    assert "cannot be read" in response.content.decode()
    assert not WebhookChannel.objects.exists()


@pytest.mark.parametrize("contact", ["x", "9" * 25, "-1", "\x00"])
def test_an_override_with_a_contact_that_is_not_an_id_is_a_form_error(
    staff_client, rotation, contact
):
    response = staff_client.post(
        reverse("admin:people_oncalloverride_add"),
        {
            "rotation": rotation.pk,
            "contact": contact,
            "starts_at_0": "2026-01-05",
            "starts_at_1": "09:00:00",
            "ends_at_0": "2026-01-06",
            "ends_at_1": "09:00:00",
            "reason": "swap",
        },
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["contact"]
