"""Alerts through the incidents intake: suppressed during a window for its systems only."""

import datetime as dt

import pytest
from django.urls import reverse

from incidents.models import Incident
from incidents.services import alert_receive
from maintenance.services import window_finish, window_start

pytestmark = pytest.mark.django_db


def fire(system, fingerprint="disk-full"):
    return alert_receive(
        fingerprint=fingerprint,
        status="firing",
        title=f"Disk almost full on {system.name}",
        severity="sev2",
        category="database",
        systems=[system],
    )


def test_alerts_are_suppressed_for_affected_systems_while_the_window_runs(
    schedule, superuser, postgres_target, redis_target, staff_client
):
    window = schedule(systems=[postgres_target], starts_in=dt.timedelta(0))
    window_start(window=window, actor=superuser, override_reason="emergency patch")

    suppressed = fire(postgres_target)
    assert suppressed.suppressed_by == window
    assert suppressed.incident is None
    assert not Incident.objects.exists()

    unaffected = fire(redis_target, fingerprint="cache-evictions")
    assert unaffected.suppressed_by is None
    assert unaffected.incident is not None  # an unaffected system pages as usual

    page = staff_client.get(
        reverse("admin:maintenance_maintenancewindow_change", args=[window.pk])
    ).content.decode()
    assert "Alerts suppressed by this window" in page
    assert "Disk almost full on test-postgres" in page

    window_finish(window=window, actor=superuser)
    after = fire(postgres_target)
    assert after.suppressed_by is None
    assert after.incident is not None  # still firing after the window: handled normally
    assert list(window.suppressed_alerts.all()) == [suppressed]
