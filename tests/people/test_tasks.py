"""notify() to delivery through the real broker (Redis) and a real Celery worker."""

import time

from celery.contrib.testing.worker import start_worker

from opsportal.celery import app as celery_app
from opsportal.people.models import Notification, NotificationStatus, Responsibility
from opsportal.people.services import notify


def test_a_real_worker_delivers_what_notify_queued(transactional_db, on_call_team, mailoutbox):
    # The worker runs in a thread of this process, consuming from the configured broker;
    # transactional_db so the rows are committed where the worker's connection sees them.
    with start_worker(celery_app, pool="solo", concurrency=1, perform_ping_check=False):
        [notification] = notify(responsibility=Responsibility.ON_CALL, subject="Via the broker")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            notification.refresh_from_db()
            if notification.status == NotificationStatus.SENT:
                break
            time.sleep(0.1)
    assert notification.status == NotificationStatus.SENT
    assert Notification.objects.get(pk=notification.pk).attempts == 1
    assert [m.subject for m in mailoutbox] == ["Via the broker"]
