"""A team member handles a slow API in the browser: opens the incident, attaches the
runbook, probes the API and restarts its container, and reads both results on the
timeline (a real worker runs the operations against a real container)."""

import re
import time

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from incidents.services import incidents_load_defaults
from opsportal.access import groups_load_defaults
from opsportal.people.models import Responsibility, Team
from opsportal.people.services import people_load_defaults
from opsportal.systems.models import DockerEngine, HttpEndpoint
from tests import realsystems
from tests.signin import sign_in
from tests.workers import celery_worker, clear_queue

pytestmark = [pytest.mark.browser, pytest.mark.docker]


@pytest.fixture
def api_in_a_container(transactional_db, run_container, docker_host):
    port = realsystems.free_port()
    container = run_container(["httpd", "-f", "-p", str(port), "-h", "/www"])
    realsystems.wait_for_port(port)
    engine = DockerEngine.objects.create(name="engine", base_url=docker_host, timeout_seconds=10)
    return HttpEndpoint.objects.create(
        name="api",
        url=f"http://127.0.0.1:{port}/index.html",
        docker_engine=engine,
        container_name=container.name,
        timeout_seconds=2,
    ), container


def test_team_member_probes_and_restarts_the_api_from_the_incident(
    live_server, page, api_in_a_container
):
    endpoint, container = api_in_a_container
    groups_load_defaults()
    people_load_defaults()
    incidents_load_defaults()
    member = get_user_model().objects.create_user("devon", "devon@example.com", "pw-devon-123!")
    member.is_staff = True
    member.save()
    member.groups.add(Group.objects.get(name="DevOps"))
    devops = Team.objects.get(responsibility=Responsibility.DEVOPS)
    devops.members.add(member)
    clear_queue(settings.CELERY_BROKER_URL)

    sign_in(page, live_server.url, "devon", "pw-devon-123!")

    with celery_worker():
        page.goto(f"{live_server.url}/admin/incidents/incident/add/")
        page.fill("#id_title", "API slow for checkout")
        page.select_option("#id_severity", "sev2")
        page.select_option("#id_category", "api")
        page.select_option("#id_team", str(devops.pk))
        page.fill("#id_symptoms", "API responses >500ms; user complaints about slow loading")
        page.select_option("#id_affected_systems_from", str(endpoint.pk))
        page.click("#id_affected_systems_add")
        page.click("input[name=_continue]")
        page.wait_for_selector("#incident-checklist")
        assert "Paged On-call engineer" in page.inner_text("#incident-timeline") or (
            "Could not page" in page.inner_text("#incident-timeline")
        )

        page.click("#attach-runbook")
        page.wait_for_selector(".checklist-step")
        probe_row = page.locator(".checklist-step", has_text="API responses >500ms")
        probe_row.locator("a.button", has_text="Run").click()
        page.wait_for_selector("#run-step-form")
        page.click("#confirm-run")
        page.wait_for_selector("#incident-timeline")

        restart_row = page.locator(".checklist-step", has_text="Restart slow services")
        restart_row.locator("a.button", has_text="Run").click()
        assert "This operation changes the system" in page.inner_text("#content")
        page.fill("#id_reason", "p95 over 500 ms after deploy")
        page.click("#confirm-run")
        page.wait_for_selector("#incident-timeline")

        deadline = time.monotonic() + 60
        timeline = ""
        while time.monotonic() < deadline:
            timeline = page.inner_text("#incident-timeline")
            if (
                "Probe the API on api succeeded" in timeline
                and "Restart container on api" in timeline
                and re.search(r"Restart container on api (succeeded|failed)", timeline)
            ):
                break
            time.sleep(1)
            page.reload()
    assert "Probe the API on api succeeded" in timeline, timeline
    assert "Restart container on api succeeded" in timeline, timeline
    assert re.search(r"20 requests to http://127\.0\.0\.1:\d+/index\.html: p50", timeline)
    checklist = page.inner_text("#incident-checklist")
    assert checklist.count("Succeeded") >= 2
    container.reload()
    assert container.status == "running"
