"""Escalation with a real worker and a real beat (the database scheduler, its sweep set to
every second): a SEV1 nobody acknowledges gets its second and third pages; the worker is
SIGKILLed between them and a new one takes over, and no page is lost or sent twice;
once acknowledged, beat's sweeps send nothing more.

Time is moved by making the next page due now (its row's due_at), not by waiting the
policy's minutes."""

from __future__ import annotations

import pytest
import redis
from django.conf import settings
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from incidents.models import EscalationPage, EscalationStatus, PageStatus, Severity
from incidents.services import incident_acknowledge, incident_open
from tests.workers import (
    celery_beat,
    celery_worker,
    clear_queue,
    kill_worker,
    wait_until,
    worker_log,
)

pytestmark = pytest.mark.django_db(transaction=True)


def due_now(page: EscalationPage) -> None:
    EscalationPage.objects.filter(pk=page.pk).update(due_at=timezone.now())


def status(page: EscalationPage) -> str:
    return EscalationPage.objects.get(pk=page.pk).status


def sweeps_queued() -> int:
    """Sweeps beat sent that no worker took (the default queue's length on the broker)."""
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    try:
        return client.llen("default")
    finally:
        client.close()


def sweeps_run(worker) -> int:
    return sum(
        1
        for line in worker_log(worker).splitlines()
        if "incidents.sweep_escalations[" in line and "succeeded" in line
    )


def test_pages_go_out_on_time_through_a_worker_crash_and_stop_once_acknowledged(paging, tmp_path):
    sweep = PeriodicTask.objects.get(task="incidents.sweep_escalations")
    sweep.interval, _ = IntervalSchedule.objects.get_or_create(
        every=1, period=IntervalSchedule.SECONDS
    )
    sweep.save()
    clear_queue(settings.CELERY_BROKER_URL)
    incident = incident_open(title="Checkout API down", severity=Severity.SEV1, category="other")
    escalation = incident.escalations.get()
    first, second, third, fourth = escalation.pages.order_by("sequence")[:4]
    assert status(first) == PageStatus.SENT

    with celery_beat(tmp_path):
        with celery_worker(name_prefix="escalation-a", log_dir=tmp_path) as worker_a:
            due_now(second)  # five minutes later
            wait_until(lambda: status(second) == PageStatus.SENT, "the second page")
            kill_worker(worker_a)  # between steps
        due_now(third)  # fifteen minutes later, with no worker running
        queued = sweeps_queued()
        wait_until(lambda: sweeps_queued() >= queued + 2, "beat's next sweeps")
        assert status(third) == PageStatus.SCHEDULED  # nobody to send it: kept, not lost

        with celery_worker(name_prefix="escalation-b", log_dir=tmp_path) as worker_b:
            wait_until(lambda: status(third) == PageStatus.SENT, "the third page")
            incident_acknowledge(incident=incident, actor=paging["erin"])
            due_now(fourth)
            runs = sweeps_run(worker_b)
            wait_until(lambda: sweeps_run(worker_b) >= runs + 2, "beat's next sweeps")

    assert status(fourth) == PageStatus.CANCELLED
    escalation.refresh_from_db()
    assert escalation.status == EscalationStatus.ACKNOWLEDGED
    # Each page sent once, to whom its step names.
    sent = {
        page.sequence: sorted(page.notifications.values_list("recipient", flat=True))
        for page in escalation.pages.filter(status=PageStatus.SENT)
    }
    assert sent == {
        0: ["alice@example.com", "alice@pager.example.com"],
        1: ["alice@example.com", "alice@pager.example.com"],
        2: ["dave@example.com", "devops@example.com"],
    }
