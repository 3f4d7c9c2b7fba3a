"""Automatic checklist steps, run for real: backups by a real worker with pg_dump, the
health checks and API probe against a real HTTP server, announcements; and the sweeper."""

import datetime as dt
import time

import pytest
from django.utils import timezone

from maintenance import tasks
from maintenance.models import AnnouncementKind, ChecklistStep, Phase, StepStatus
from maintenance.services import (
    step_request,
    steps_prepare_due,
    steps_sweep,
    window_finish,
    window_start,
)


def wait_for_step(step, statuses, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        step.refresh_from_db()
        if step.status in statuses:
            return step
        time.sleep(0.3)
    raise AssertionError(f"{step.title} still {step.status}: {step.result}")


@pytest.mark.django_db(transaction=True)
def test_back_up_systems_requests_real_backups_and_waits_for_them(
    celery_worker_process, schedule, superuser, postgres_target, redis_target
):
    from backups.models import Backup, BackupStatus

    window = schedule(systems=[postgres_target, redis_target])
    step = window.steps.get(title="Back up systems")
    step_request(step=step, actor=superuser)
    step = wait_for_step(step, {StepStatus.DONE, StepStatus.FAILED}, timeout=90)
    assert step.status == StepStatus.DONE, step.result
    backup = Backup.objects.get(pk__in=step.backup_ids)
    assert backup.database_id == postgres_target.pk  # the Redis cache is not a database
    assert backup.status == BackupStatus.SUCCEEDED
    assert backup.trigger == "maintenance"
    assert "Backed up" in step.result


@pytest.mark.django_db(transaction=True)
def test_back_up_systems_fails_when_the_backup_fails(
    celery_worker_process, schedule, superuser, postgres_target
):
    # A database that refuses the connection: the port of a server that is not there.
    postgres_target.port = 1
    postgres_target.save()
    window = schedule(systems=[postgres_target])
    step = window.steps.get(title="Back up systems")
    step_request(step=step, actor=superuser)
    step = wait_for_step(step, {StepStatus.DONE, StepStatus.FAILED}, timeout=90)
    assert step.status == StepStatus.FAILED
    assert "Backup failed" in step.result


@pytest.mark.django_db(transaction=True)
def test_verify_health_runs_checks_and_probes_the_api(
    celery_worker_process, schedule, superuser, http_endpoint, http_server
):
    window = schedule(systems=[http_endpoint])
    window_start(window=window, actor=superuser, override_reason="test")
    monitor = window.steps.get(title="Monitor system health")  # queued by the start
    monitor = wait_for_step(monitor, {StepStatus.DONE, StepStatus.FAILED})
    assert monitor.status == StepStatus.DONE, monitor.result
    assert "API probe test-api: HTTP 200" in monitor.result

    http_server.behaviour.status = 503
    window_finish(window=window, actor=superuser)
    verify = window.steps.get(title="Verify system health")
    verify = wait_for_step(verify, {StepStatus.DONE, StepStatus.FAILED})
    assert verify.status == StepStatus.FAILED
    assert "HTTP 503" in verify.result and "expected 200" in verify.result
    notify = wait_for_step(window.steps.get(title="Notify completion"), {StepStatus.DONE})
    assert "Completion announced" in notify.result


@pytest.mark.django_db
def test_notify_users_step_sends_the_announcement_once(schedule, superuser, devops_team):
    window = schedule(starts_in=dt.timedelta(minutes=30))
    assert steps_prepare_due() == 2  # notify users and back up systems, an hour ahead
    step = window.steps.get(title="Notify users")
    assert step.status == StepStatus.QUEUED
    tasks.run_step.apply(args=[step.pk])
    step.refresh_from_db()
    assert step.status == StepStatus.DONE
    assert "devops@example.com" in step.result
    assert window.announcements.filter(kind=AnnouncementKind.LEAD).count() == 1
    assert steps_prepare_due() == 0  # nothing left pending


@pytest.mark.django_db
def test_sweeper_fails_steps_whose_worker_died(schedule, superuser):
    window = schedule()
    step = window.steps.get(title="Notify users")
    ChecklistStep.objects.filter(pk=step.pk).update(
        status=StepStatus.RUNNING, started_at=timezone.now()
    )
    assert steps_sweep()["failed"] == 0
    assert steps_sweep(now=timezone.now() + dt.timedelta(minutes=3))["failed"] == 1
    step.refresh_from_db()
    assert step.status == StepStatus.FAILED
    assert "did not finish" in step.result
    # A failed automatic step can be run again.
    step_request(step=step, actor=superuser)
    step.refresh_from_db()
    assert step.status == StepStatus.QUEUED
    assert window.steps.filter(phase=Phase.PRE).count() == 3
