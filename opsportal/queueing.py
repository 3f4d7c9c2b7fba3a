"""Enqueueing background work after the row that describes it is committed.

The database row is the source of truth; if the broker is down the message is simply not
sent, and the owning app's sweeper dispatches the row again later.
"""

import logging

from celery import Task
from django.db import transaction

logger = logging.getLogger(__name__)


def enqueue_after_commit(task: Task, *args: object, **options: object) -> None:
    def send() -> None:
        try:
            task.apply_async(args=args, retry=False, **options)
        except Exception:
            logger.warning(
                "Could not enqueue %s%r; the sweeper will dispatch it again.",
                task.name,
                args,
                exc_info=True,
            )

    transaction.on_commit(send)
