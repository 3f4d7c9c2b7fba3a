"""The overview page, the system pages' charts, /metrics and the task."""

from __future__ import annotations

import datetime as dt
import subprocess

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from incidents.services import incidents_load_defaults
from opsportal.monitoring import services, tasks
from opsportal.monitoring.models import AlertRule, CollectionSchedule
from opsportal.systems.models import HttpEndpoint
from tests.monitoring.conftest import collect_now


@pytest.fixture
def firing_api(db, http_endpoint, http_server):
    incidents_load_defaults()
    services.monitoring_load_defaults()
    AlertRule.objects.filter(name="API error rate above 5%").update(for_seconds=0)
    http_server.behaviour.status = 500
    collect_now()
    return http_endpoint


def test_overview_shows_incident_alert_systems_and_figures(firing_api, staff_client):
    page = staff_client.get("/admin/")
    html = page.content.decode()
    assert page.status_code == 200
    assert "API error rate above 5%" in html  # the firing alert
    assert f"API error rate above 5% on {firing_api.name}" in html  # its incident
    assert 'data-system="test-api"' in html
    assert "http error rate percent: <strong>100.0 %</strong>" in html
    assert 'class="app-monitoring module' in html  # the app list stays below it


def test_overview_queries_stay_bounded_as_systems_grow(firing_api, staff_client):
    def queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert staff_client.get("/admin/").status_code == 200
        return len(ctx.captured_queries)

    before = queries()
    for i in range(15):
        HttpEndpoint.objects.create(name=f"api-{i}", url=f"http://127.0.0.1:9/{i}")
    collect_now()
    assert queries() == before


def test_system_page_shows_its_charts(firing_api, staff_client, http_server):
    http_server.behaviour.status = 200
    collect_now()
    page = staff_client.get(f"/admin/systems/httpendpoint/{firing_api.pk}/change/")
    html = page.content.decode()
    assert 'id="monitoring-charts"' in html
    assert html.count("<polyline") == 2  # p95 and error rate, each with two samples


def test_metrics_export_every_figure_and_passes_promtool(firing_api, client, tmp_path):
    body = client.get("/metrics").content.decode()
    assert 'opsportal_collection_up{kind="http",system="test-api"} 1.0' in body
    assert 'opsportal_http_error_ratio{kind="http",system="test-api"} 1.0' in body
    assert 'opsportal_alerts_firing{rule="API error rate above 5%",severity="sev2"} 1.0' in body
    assert 'opsportal_disk_used_ratio{kind="portal",path=' in body
    exported = body.split("# HELP opsportal_")[1:]
    assert len(exported) >= 5
    check = subprocess.run(
        ["promtool", "check", "metrics"], input=body, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_collect_task_runs_a_round(http_endpoint, eager_celery, django_capture_on_commit_callbacks):
    # Beat's tick leases the due system and, once that is committed, sends its collection
    # to the collect queue (run in this process here: eager).
    with django_capture_on_commit_callbacks(execute=True):
        result = tasks.collect.apply()
    assert result.successful() and result.result == 1
    schedule = CollectionSchedule.objects.get(pk=http_endpoint.pk)
    assert schedule.last_ok and schedule.next_due_at > timezone.now()
    assert schedule.lease_until is None
    with django_capture_on_commit_callbacks(execute=True) as sent:
        assert tasks.collect.apply().result == 0  # not due again yet
    assert not sent


def test_health_detailed_reports_stale_collection(http_endpoint, staff_client):
    collect_now()
    CollectionSchedule.objects.update(last_finished_at=timezone.now() - dt.timedelta(hours=1))
    checks = {c["name"]: c for c in staff_client.get("/health/detailed").json()["checks"]}
    assert checks["monitoring:collection"]["status"] == "failing"
    assert "test-api" in checks["monitoring:collection"]["message"]


def test_overview_shows_windows_on_call_and_last_backups(
    db, http_endpoint, postgres_target, staff_client, superuser, settings, tmp_path
):
    from backups.services import backup_plan_ensure, backup_run_now
    from maintenance.models import MaintenanceWindow
    from maintenance.services import window_schedule, window_start
    from opsportal.people.models import (
        Contact,
        OnCallRotation,
        Responsibility,
        RotationMember,
        Team,
    )
    from opsportal.people.services import people_load_defaults
    from opsportal.systems.models import PostgresDatabase

    settings.BACKUP_ROOT = tmp_path / "backups"
    people_load_defaults()
    on_call = Team.objects.get(responsibility=Responsibility.ON_CALL)
    olga = Contact.objects.create(name="Olga On-call", team=on_call, email="olga@example.com")
    RotationMember.objects.create(rotation=OnCallRotation.objects.get(), contact=olga)
    backup_plan_ensure(database=postgres_target)
    backup = backup_run_now(database=postgres_target, reason="overview test")
    assert backup.status == "succeeded"
    never = PostgresDatabase.objects.create(name="never-backed-up", host="127.0.0.1", port=9)
    backup_plan_ensure(database=never)
    now = timezone.now()
    active = window_schedule(
        window=MaintenanceWindow(
            title="API upgrade", starts_at=now + dt.timedelta(minutes=1),
            ends_at=now + dt.timedelta(hours=1),
        ),
        systems=[http_endpoint.system_ptr], actor=superuser,
    )  # fmt: skip
    window_start(window=active, actor=superuser, override_reason="overview test")
    window_schedule(
        window=MaintenanceWindow(
            title="Database patching", starts_at=now + dt.timedelta(days=2),
            ends_at=now + dt.timedelta(days=2, hours=1),
        ),
        systems=[postgres_target.system_ptr], actor=superuser,
    )  # fmt: skip
    collect_now()

    html = staff_client.get("/admin/").content.decode()

    def section(anchor: str) -> str:
        start = html.index(f'id="{anchor}"')
        return html[start : html.index('<div class="module"', start + 1)]

    maintenance = section("ov-maintenance")
    assert "In progress" in maintenance and "API upgrade" in maintenance
    assert "Next" in maintenance and "Database patching" in maintenance
    assert "<strong>Olga On-call" in section("ov-oncall")
    backups = section("ov-backups")
    assert postgres_target.name in backups and " ago" in backups
    assert "never-backed-up" in backups and ">never<" in backups
    systems = html[html.index('id="ov-systems"') :]
    assert "in maintenance (API upgrade)" in systems


def test_default_collection_interval_is_30_seconds(http_endpoint):
    before = timezone.now()
    collect_now()
    schedule = CollectionSchedule.objects.get(pk=http_endpoint.pk)
    assert schedule.interval_seconds == 30
    assert 29 <= (schedule.next_due_at - before).total_seconds() <= 35


def test_metrics_export_sits_alongside_incident_backup_and_maintenance_gauges(firing_api, client):
    body = client.get("/metrics").content.decode()
    incidents = [line for line in body.splitlines() if line.startswith("opsportal_incidents_open{")]
    assert any('severity="sev2"' in line and line.endswith(" 1.0") for line in incidents)
    assert "# TYPE opsportal_system_in_maintenance gauge" in body
    assert "# TYPE opsportal_maintenance_windows_in_progress gauge" in body
    assert "# TYPE opsportal_backup_last_success_timestamp_seconds gauge" in body


def test_database_and_cache_pages_show_their_charts(
    db, postgres_target, redis_target, staff_client
):
    collect_now()
    collect_now()
    for url in (
        f"/admin/systems/postgresdatabase/{postgres_target.pk}/change/",
        f"/admin/systems/rediscache/{redis_target.pk}/change/",
    ):
        html = staff_client.get(url).content.decode()
        assert 'id="monitoring-charts"' in html, url
        assert html.count("<polyline") >= 1, url
