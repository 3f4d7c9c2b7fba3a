"""A first run that is not empty (issue 11): `load_defaults` on a fresh database shows the
coming maintenance windows and security due dates at once, and the admin home of a portal
with no systems says what to do first, with links for those allowed to do it."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.utils import timezone

from maintenance.models import MaintenanceWindow, TaskOccurrence
from opsportal.defaults import load_defaults
from opsportal.systems.models import DockerEngine
from tests.signin import TwoFactorClient

pytestmark = pytest.mark.django_db


def signed_in(*, group: str | None = None) -> TwoFactorClient:
    users = get_user_model().objects
    if group is None:
        user = users.create_superuser("first-admin", "admin@example.com", "pw-first-123!")
    else:
        user = users.create_user(f"first-{group.lower()}", password="pw-first-123!", is_staff=True)
        user.groups.add(Group.objects.get(name=group))
    client = TwoFactorClient()
    client.force_login(user)
    return client


def getting_started_panel(html: str) -> str:
    match = re.search(r'<div class="module" id="ov-getting-started">(.*?)</div>', html, re.S)
    return match.group(1) if match else ""


def test_load_defaults_generates_the_coming_windows_and_due_dates_at_once():
    load_defaults()
    now = timezone.now()
    assert MaintenanceWindow.objects.filter(starts_at__gt=now).exists()
    # Only coming due dates: a fresh install owes nothing from before it existed.
    assert TaskOccurrence.objects.filter(due_at__gt=now).exists()
    assert not TaskOccurrence.objects.filter(due_at__lt=now).exists()
    windows, due_dates = MaintenanceWindow.objects.count(), TaskOccurrence.objects.count()
    load_defaults()  # a second load creates nothing more
    assert (MaintenanceWindow.objects.count(), TaskOccurrence.objects.count()) == (
        windows,
        due_dates,
    )

    html = signed_in().get("/admin/").content.decode()
    next_window = MaintenanceWindow.objects.filter(starts_at__gt=now).order_by("starts_at")[0]
    assert next_window.title in html  # "Next" on the home page, not "none scheduled"


def test_an_empty_portal_says_what_to_do_first_with_links():
    load_defaults()
    panel = getting_started_panel(signed_in().get("/admin/").content.decode())
    for step, url in [
        ("Register a Docker engine", "/admin/systems/dockerengine/add/"),
        ("Register a PostgreSQL database", "/admin/systems/postgresdatabase/add/"),
        ("Register an HTTP endpoint", "/admin/systems/httpendpoint/add/"),
        ("Say who is on call", "/admin/people/oncallrotation/add/"),
    ]:
        assert f'<a href="{url}">{step}</a>' in panel


def test_a_viewer_is_told_whom_to_ask_instead_of_given_links():
    load_defaults()
    panel = getting_started_panel(signed_in(group="Viewers").get("/admin/").content.decode())
    assert "Register a Docker engine" in panel
    assert "ask an administrator" in panel
    assert "/add/" not in panel


def test_the_panel_goes_once_a_system_is_registered():
    load_defaults()
    client = signed_in()
    assert getting_started_panel(client.get("/admin/").content.decode())
    DockerEngine.objects.create(name="engine-1", base_url="unix:///var/run/docker.sock")
    html = client.get("/admin/").content.decode()
    assert 'id="ov-getting-started"' not in html
    assert "engine-1" in html
