"""The admin's home page as an operations overview, in a real browser."""

import pytest

from incidents.services import incidents_load_defaults
from opsportal.monitoring import services
from opsportal.monitoring.models import AlertRule
from tests.monitoring.conftest import collect_now

pytestmark = pytest.mark.browser


def test_overview_shows_a_firing_alert_and_its_incident(
    admin_login, live_server, http_endpoint, http_server
):
    page, _ = admin_login
    incidents_load_defaults()
    services.monitoring_load_defaults()
    AlertRule.objects.filter(name="API error rate above 5%").update(for_seconds=0)
    collect_now()
    http_server.behaviour.status = 503
    collect_now()

    page.goto(f"{live_server.url}/admin/")
    alerts = page.locator("#ov-alerts")
    assert "API error rate above 5%" in alerts.inner_text()
    assert "test-api" in alerts.inner_text()
    row = page.locator('#ov-systems tr[data-system="test-api"]')
    assert "UP" in row.inner_text() and "1 firing" in row.inner_text()
    assert row.locator("svg.sparkline polyline").count() >= 1  # two samples: a line
    incidents = page.locator("#ov-incidents")
    assert "SEV2: 1" in incidents.inner_text()
    incidents.get_by_role("link", name="API error rate above 5% on test-api").click()
    page.wait_for_selector("#content h2, #content h1")
    assert "API error rate above 5% on test-api" in page.content()
    assert "/admin/incidents/incident/" in page.url
