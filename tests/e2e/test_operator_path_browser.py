"""Issue 16, the operator's way in the browser: from the overview's firing alert, the
runbook's step opens with the system and container already chosen, the operator confirms,
a real worker restarts the real container, and "Mark mitigated" is offered on the spot: at
most 3 form submissions from the overview to a mitigated incident."""

import re
import time

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.utils import timezone

from incidents.models import Incident, Status
from incidents.services import incidents_load_defaults
from opsportal.access import groups_load_defaults
from opsportal.monitoring.models import AlertState
from opsportal.monitoring.services import alerts_evaluate, monitoring_load_defaults
from opsportal.people.services import people_load_defaults
from tests.signin import sign_in
from tests.workers import celery_worker, clear_queue

pytestmark = [pytest.mark.browser, pytest.mark.docker]


def test_overview_alert_to_mitigated_in_three_submissions(
    live_server, page, transactional_db, docker_engine, run_container
):
    groups_load_defaults()
    people_load_defaults()
    incidents_load_defaults()
    monitoring_load_defaults()
    user = get_user_model().objects.create_user("olga", "olga@example.com", "pw-olga-123!")
    user.is_staff = True
    user.save()
    user.groups.add(Group.objects.get(name="On-call engineers"))
    container = run_container("sleep 600")
    started_at = container.attrs["State"]["StartedAt"]
    # The restart rule fires on the container through the real rule evaluation.
    alerts_evaluate(
        values={(docker_engine.pk, "container_restarts_5m", container.name): (5.0, timezone.now())},
        systems={docker_engine.pk: docker_engine},
    )
    state = AlertState.objects.get(subject=container.name, status="firing")
    incident = Incident.objects.get(pk=state.incident_id)
    clear_queue(settings.CELERY_BROKER_URL)

    sign_in(page, live_server.url, "olga", "pw-olga-123!")
    submissions = []
    page.on(
        "request",
        lambda request: (
            submissions.append(request.url)
            if request.method == "POST" and request.resource_type == "document"
            else None
        ),
    )

    with celery_worker():
        page.goto(f"{live_server.url}/admin/")
        alert = page.locator(f'tr.ov-alert[data-alert="{state.pk}"]')
        assert container.name in alert.inner_text()
        # Narrow columns wrap between words, never inside one (the admin's dashboard CSS
        # sets word-break: break-word on every cell).
        for cell in ("tr.ov-alert td", "tr.ov-incident td", "#ov-systems td"):
            styles = page.eval_on_selector(
                f"#operations-overview {cell}",
                "el => [getComputedStyle(el).wordBreak, getComputedStyle(el).overflowWrap]",
            )
            assert styles == ["normal", "normal"], (cell, styles)
        alert.locator("a.ov-run-step").click()
        page.wait_for_selector("#run-step-form")
        # Chosen from the alert: nothing to type but the reason.
        assert page.locator("#id_target option:checked").inner_text() == docker_engine.name
        assert page.input_value("#id_param_container") == container.name
        assert page.input_value("#id_param_timeout_seconds") == "10"
        page.fill("#id_param_timeout_seconds", "1")  # busybox sleep ignores SIGTERM
        page.fill("#id_reason", "restarting repeatedly")
        page.click("#confirm-run")
        page.wait_for_selector("#incident-timeline")

        deadline = time.monotonic() + 60
        while not page.locator("#mark-mitigated").count():
            assert time.monotonic() < deadline, page.inner_text("#incident-checklist")
            time.sleep(1)
            page.reload()
        page.click("#mark-mitigated")
        page.wait_for_selector("#incident-status")

    assert re.search(r"Mitigated", page.inner_text("#incident-status"))
    incident.refresh_from_db()
    assert incident.status == Status.MITIGATED
    container.reload()
    assert container.attrs["State"]["StartedAt"] != started_at  # really restarted
    assert len(submissions) <= 3, submissions
    assert len(submissions) == 2  # confirm, mark mitigated
