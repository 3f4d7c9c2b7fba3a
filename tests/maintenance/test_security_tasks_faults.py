"""Recurring security tasks: completion with evidence alone, and the weekly scan's
vulnerability audit when its data cannot be reached (recorded as not run, never passed)."""

import datetime as dt

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from maintenance import scans
from maintenance.models import OccurrenceStatus, RecurringTask, TaskOccurrence
from maintenance.services import occurrence_complete
from opsportal.audit.models import AuditRecord
from opsportal.people.models import Responsibility, Team


@pytest.mark.django_db
def test_a_task_is_completed_with_attached_evidence_and_no_notes(superuser):
    team = Team.objects.create(
        name="Security", responsibility=Responsibility.SECURITY, email="security@example.com"
    )
    task = RecurringTask.objects.create(
        name="Annual security audit",
        team=team,
        rrule="FREQ=YEARLY;BYMONTH=11;BYMONTHDAY=1",
        first_due=timezone.now() - dt.timedelta(days=400),
    )
    occurrence = TaskOccurrence.objects.create(task=task, due_at=timezone.now())
    report = SimpleUploadedFile("audit-2026.txt", b"External audit: 0 high, 2 medium findings\n")

    done = occurrence_complete(occurrence=occurrence, actor=superuser, evidence=report)

    done.refresh_from_db()
    assert done.status == OccurrenceStatus.DONE
    assert done.completed_by == superuser and done.completed_at is not None
    with done.evidence.open("rb") as stored:  # the file itself is kept, not just its name
        assert stored.read() == b"External audit: 0 high, 2 medium findings\n"
    record = AuditRecord.objects.filter(
        object_type="maintenance.taskoccurrence", object_id=str(done.pk)
    ).latest("pk")
    assert done.evidence.name in record.message


def test_an_unreachable_vulnerability_service_is_recorded_as_not_run(tmp_path, monkeypatch):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("requests==2.0.0\n")  # has known vulnerabilities, if reachable
    # Every request pip-audit makes goes to a proxy on a closed port; an empty cache so no
    # earlier answer stands in for the service.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:1")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path))

    audit = scans.requirements_audit(requirements=requirements)

    assert audit["status"] == scans.NOT_RUN, audit
    assert audit["summary"]  # says why
    assert audit["vulnerabilities"] == []


def test_a_missing_requirements_file_is_not_run(tmp_path):
    audit = scans.requirements_audit(requirements=tmp_path / "missing.txt")
    assert audit["status"] == scans.NOT_RUN, audit
    assert audit["summary"]
