"""A first run that is not empty: load_defaults generates the runbook plans' coming
windows and the security tasks' due dates at once (not after the nightly generation), and
the home page of a portal with no systems says what to do next, with links."""

from __future__ import annotations

from django.contrib.auth import get_user_model

from maintenance.models import MaintenancePlan, MaintenanceWindow, TaskOccurrence
from opsportal.defaults import load_defaults
from opsportal.systems.models import HttpEndpoint
from tests.systems.conftest import client_in_group


def test_load_defaults_generates_the_coming_windows_and_due_dates_once(db):
    load_defaults()
    plans = MaintenancePlan.objects.filter(active=True)
    assert plans.exists()
    for plan in plans:
        assert MaintenanceWindow.objects.filter(plan=plan).exists(), plan.name
    assert TaskOccurrence.objects.exists()
    windows, due_dates = MaintenanceWindow.objects.count(), TaskOccurrence.objects.count()
    load_defaults()  # again: nothing new
    assert (MaintenanceWindow.objects.count(), TaskOccurrence.objects.count()) == (
        windows,
        due_dates,
    )


def test_the_home_page_of_an_empty_portal_explains_the_next_steps(db, client):
    load_defaults()
    root = get_user_model().objects.create_superuser("root", "root@example.com", "pw-root-123!")
    client.force_login(root)
    html = client.get("/admin/").content.decode()
    assert "Getting started: nothing is registered yet" in html
    for link in (
        "/admin/systems/dockerengine/add/",
        "/admin/systems/postgresdatabase/add/",
        "/admin/systems/httpendpoint/add/",
        "/admin/people/oncallrotation/",
        "/admin/incidents/escalationpolicy/",
    ):
        assert f'href="{link}"' in html, link
    assert "Primary on-call: nobody yet" in html
    assert "(next: Monthly maintenance" in html or "(next: Quarterly" in html
    assert 'id="ov-systems"' not in html  # no empty table

    # A viewer is told whom to ask instead of links they could not use.
    viewer = client_in_group("Viewers").get("/admin/").content.decode()
    assert "ask DevOps" in viewer and "/admin/systems/dockerengine/add/" not in viewer

    HttpEndpoint.objects.create(name="api", url="http://127.0.0.1:9/health", timeout_seconds=1)
    html = client.get("/admin/").content.decode()
    assert "Getting started" not in html and 'id="ov-systems"' in html
