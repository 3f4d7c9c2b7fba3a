"""The security scan's sweeper (through the shared opsportal.jobs sweep): a queued scan the
broker lost is sent again, a running one whose worker died is failed at its time limit."""

import datetime as dt

import pytest
from django.utils import timezone

from maintenance.models import RecurringTask, ScanStatus, TaskKind, TaskOccurrence
from maintenance.services import (
    SCAN_TIME_LIMIT,
    maintenance_load_defaults,
    security_scan_request,
    security_scans_sweep,
)
from opsportal.jobs import job_claim
from opsportal.people.models import Responsibility, Team
from opsportal.people.services import people_load_defaults

DIED = "The worker did not finish the scan in time (it may have died)."


@pytest.fixture
def occurrence(db):
    people_load_defaults()
    Team.objects.filter(responsibility=Responsibility.SECURITY).update(email="security@example.com")
    maintenance_load_defaults()
    task = RecurringTask.objects.get(kind=TaskKind.SECURITY_SCAN)
    return TaskOccurrence.objects.create(task=task, due_at=timezone.now())


def test_a_lost_scan_is_sent_again_and_a_dead_one_failed_at_its_limit(
    occurrence, superuser, django_capture_on_commit_callbacks
):
    security_scan_request(occurrence=occurrence, actor=superuser)
    with django_capture_on_commit_callbacks() as sent:
        assert security_scans_sweep() == 0
    assert sent == []  # just queued: not lost yet
    with django_capture_on_commit_callbacks() as sent:
        assert security_scans_sweep(now=timezone.now() + dt.timedelta(seconds=61)) == 0
    assert len(sent) == 1  # dispatched again

    # A worker claims it (as security_scan_run does) and dies.
    started = timezone.now()
    assert job_claim(
        TaskOccurrence,
        occurrence.pk,
        from_status=ScanStatus.QUEUED,
        to_status=ScanStatus.RUNNING,
        status_field="scan_status",
        scan_started_at=started,
    )
    assert security_scans_sweep(now=started + SCAN_TIME_LIMIT - dt.timedelta(seconds=1)) == 0
    assert security_scans_sweep(now=started + SCAN_TIME_LIMIT) == 1
    occurrence.refresh_from_db()
    assert occurrence.scan_status == ScanStatus.FAILED
    assert occurrence.findings == {"error": DIED}
    assert security_scans_sweep(now=started + SCAN_TIME_LIMIT) == 0
