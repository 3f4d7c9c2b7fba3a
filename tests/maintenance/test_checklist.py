"""Automatic checklist steps, run for real: backups by a real worker with pg_dump, the
health checks and API probe against a real HTTP server, announcements; and the sweeper."""

import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.utils import timezone

from maintenance import tasks
from maintenance.models import AnnouncementKind, ChecklistStep, Phase, StepStatus
from maintenance.services import (
    UNDISPATCHED_AFTER,
    step_request,
    steps_prepare_due,
    steps_sweep,
    window_finish,
    window_start,
)
from opsportal.audit.models import AuditRecord
from tests.realsystems import free_port


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


def run_in_portal_process(code: str, *, broker_url: str) -> str:
    """Python in another portal process on this test's database, with its own broker URL
    (its own Celery app, as a web process whose broker is down)."""
    from django.db import connection

    env = dict(os.environ)
    env["DATABASE_URL"] = (
        env["DATABASE_URL"].rsplit("/", 1)[0] + "/" + connection.settings_dict["NAME"]
    )
    env["CELERY_BROKER_URL"] = broker_url
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.django_db(transaction=True)
def test_a_step_requested_while_the_broker_is_down_is_run_once_by_the_sweeper(
    celery_worker_process, schedule, superuser, postgres_target
):
    from backups.models import Backup, BackupStatus

    window = schedule(systems=[postgres_target], title="Upgrade PostgreSQL 16")
    step = window.steps.get(title="Back up systems")
    # Requested from a process whose broker is a closed port: the request succeeds (the
    # row is the source of truth) and its message is lost.
    out = run_in_portal_process(
        "from django.contrib.auth import get_user_model\n"
        "from maintenance.models import ChecklistStep\n"
        "from maintenance.services import step_request\n"
        f"step = ChecklistStep.objects.get(pk={step.pk})\n"
        f"actor = get_user_model().objects.get(pk={superuser.pk})\n"
        "print('requested', step_request(step=step, actor=actor).status)",
        broker_url=f"redis://127.0.0.1:{free_port()}/0",
    )
    assert "requested queued" in out
    time.sleep(2)  # the real worker is up: nothing reached it
    step.refresh_from_db()
    assert step.status == StepStatus.QUEUED
    assert not Backup.objects.exists()

    # Not stuck long enough yet: left alone.
    assert steps_sweep()["redispatched"] == 0
    # Past the threshold, two sweeper runs race (each sends it again); the worker's
    # atomic claim lets only one of them run the step.
    later = step.queued_at + UNDISPATCHED_AFTER + dt.timedelta(seconds=1)
    assert steps_sweep(now=later)["redispatched"] == 1
    assert steps_sweep(now=later)["redispatched"] == 1
    step = wait_for_step(step, {StepStatus.DONE, StepStatus.FAILED}, timeout=90)
    assert step.status == StepStatus.DONE, step.result

    backup = Backup.objects.get()  # exactly one backup: the step ran once
    assert backup.status == BackupStatus.SUCCEEDED and backup.database_id == postgres_target.pk
    assert step.backup_ids == [backup.pk]
    done = AuditRecord.objects.filter(
        object_id=str(window.pk), message__startswith="Checklist: “Back up systems” done"
    )
    assert done.count() == 1
    # Once run, the sweeper has nothing left to send.
    assert steps_sweep(now=later + dt.timedelta(minutes=5))["redispatched"] == 0
