"""/health/detailed and /metrics name the systems in maintenance; recurring security tasks:
due dates, completion, overdue reminders, and the weekly scan's automatic part."""

import datetime as dt
import subprocess

import pytest
from django.utils import timezone

from maintenance import scans, tasks
from maintenance.models import (
    MaintenancePlan,
    OccurrenceStatus,
    RecurringTask,
    ScanStatus,
    TaskOccurrence,
)
from maintenance.services import (
    MaintenanceError,
    maintenance_load_defaults,
    occurrence_complete,
    occurrences_remind_overdue,
    security_scan_request,
    task_generate_occurrences,
    window_start,
)
from opsportal.people.models import Notification, Responsibility, Team
from opsportal.people.services import people_load_defaults

pytestmark = pytest.mark.django_db


def test_health_and_metrics_say_which_systems_are_in_maintenance(
    staff_client, schedule, superuser, redis_target, tmp_path
):
    def maintenance_check():
        body = staff_client.get("/health/detailed").json()
        return next(c for c in body["checks"] if c["name"] == "maintenance")

    assert maintenance_check()["message"] == "No system is in maintenance."
    window = schedule(systems=[redis_target], title="Redis 7.4", starts_in=dt.timedelta(0))
    window_start(window=window, actor=superuser, override_reason="test")
    check = maintenance_check()
    assert check["message"] == "In maintenance now: test-redis (Redis 7.4)"
    assert check["critical"] is False

    metrics = staff_client.get("/metrics").content.decode()
    assert 'opsportal_system_in_maintenance{system="test-redis",window="Redis 7.4"} 1.0' in metrics
    assert "opsportal_maintenance_windows_in_progress 1.0" in metrics
    ours = (
        "\n".join(
            line
            for line in metrics.splitlines()
            if "opsportal_system_in_maintenance" in line or "opsportal_maintenance_windows" in line
        )
        + "\n"
    )
    checked = subprocess.run(
        ["promtool", "check", "metrics"], input=ours, text=True, capture_output=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.fixture
def security_tasks(db):
    people_load_defaults()
    Team.objects.filter(responsibility=Responsibility.SECURITY).update(email="security@example.com")
    maintenance_load_defaults()
    return {t.kind: t for t in RecurringTask.objects.all()}


def test_runbook_security_tasks_generate_their_due_dates(security_tasks):
    assert set(security_tasks) == {
        "security_scan",
        "dependency_updates",
        "penetration_test",
        "security_audit",
    }
    maintenance_load_defaults()  # idempotent: nothing doubled
    assert RecurringTask.objects.count() == 4
    assert MaintenancePlan.objects.count() == 3
    # load_defaults generated the coming due dates itself: a fresh install shows them.
    for task in security_tasks.values():
        assert task.occurrences.filter(due_at__gte=timezone.now()).exists(), task.name
    now = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)

    def due_around_now(task):
        task_generate_occurrences(task=task, now=now)
        return list(
            task.occurrences.filter(
                due_at__gte=now - dt.timedelta(days=7), due_at__lte=now + dt.timedelta(days=90)
            ).order_by("due_at")
        )

    weekly = due_around_now(security_tasks["security_scan"])
    assert all(o.due_at.weekday() == 0 for o in weekly)  # Mondays
    assert 13 <= len(weekly) <= 15  # 90 days ahead plus last week's
    quarterly = due_around_now(security_tasks["penetration_test"])
    # The one due yesterday (within the last week) too, so it can still be recorded late.
    assert [o.due_at.date() for o in quarterly] == [dt.date(2026, 12, 31), dt.date(2027, 3, 31)]
    assert task_generate_occurrences(task=security_tasks["security_scan"], now=now) == []


def test_completion_needs_notes_or_evidence_and_records_who(security_tasks, superuser):
    task = security_tasks["dependency_updates"]
    occurrence = TaskOccurrence.objects.create(task=task, due_at=timezone.now())
    with pytest.raises(MaintenanceError, match="notes or attach evidence"):
        occurrence_complete(occurrence=occurrence, actor=superuser)
    done = occurrence_complete(
        occurrence=occurrence, actor=superuser, notes="Bumped Django to 5.2.20"
    )
    assert done.status == OccurrenceStatus.DONE
    assert done.completed_by == superuser and done.completed_at is not None


def test_overdue_tasks_remind_the_owning_team_once_a_day(security_tasks):
    task = security_tasks["penetration_test"]
    now = timezone.now()
    # Only this test's own due dates (load_defaults generated the coming ones, some of
    # which fall due within the day this test travels forward).
    TaskOccurrence.objects.all().delete()
    TaskOccurrence.objects.create(task=task, due_at=now - dt.timedelta(days=2))
    TaskOccurrence.objects.create(task=task, due_at=now + dt.timedelta(days=2))
    assert occurrences_remind_overdue(now=now) == 1
    reminder = Notification.objects.get(subject__startswith="Overdue: Quarterly penetration")
    assert reminder.recipient == "security@example.com"
    assert occurrences_remind_overdue(now=now + dt.timedelta(hours=2)) == 0
    assert occurrences_remind_overdue(now=now + dt.timedelta(days=1, hours=1)) == 1


def test_the_weekly_scan_attaches_findings_and_never_passes_what_it_could_not_audit(
    security_tasks, superuser
):
    occurrence = TaskOccurrence.objects.create(
        task=security_tasks["security_scan"], due_at=timezone.now()
    )
    security_scan_request(occurrence=occurrence, actor=superuser)
    tasks.run_security_scan.apply(args=[occurrence.pk])
    occurrence.refresh_from_db()
    assert occurrence.scan_status == ScanStatus.FINISHED
    deploy = occurrence.findings["deployment_checks"]
    # The test settings turn HTTPS redirects off: the deployment checks say so.
    assert "security.W008" in {issue["id"] for issue in deploy["issues"]}
    audit = occurrence.findings["vulnerability_audit"]
    assert audit["status"] in {scans.RAN, scans.NOT_RUN, scans.PARTIAL, scans.FOUND}
    if audit["status"] == scans.RAN:
        assert not audit["skipped"] and not audit["vulnerabilities"]
    if audit["status"] == scans.NOT_RUN:
        assert audit["summary"]  # says why
    assert occurrence.evidence.name.endswith(".json")


def test_an_audit_that_skipped_every_package_is_not_run_not_passed():
    # What pip-audit prints (exit code 0, "No known vulnerabilities found") when it cannot
    # reach its vulnerability data: every dependency skipped.
    report = {
        "dependencies": [
            {
                "name": "django",
                "skip_reason": "Dependency not found on PyPI and could not be "
                "audited: django (5.2.19)",
            },
            {
                "name": "celery",
                "skip_reason": "Dependency not found on PyPI and could not be "
                "audited: celery (5.7.0)",
            },
        ],
        "fixes": [],
    }
    assert scans.summarise_audit(report)["status"] == scans.NOT_RUN
    report["dependencies"].append(
        {
            "name": "requests",
            "version": "2.0.0",
            "vulns": [{"id": "PYSEC-2014-13", "fix_versions": ["2.3.0"], "description": "..."}],
        }
    )
    summary = scans.summarise_audit(report)
    assert summary["status"] == scans.FOUND
    assert summary["vulnerabilities"][0]["id"] == "PYSEC-2014-13"
    assert summary["skipped"] == ["django", "celery"]
