"""Load for the embedded-broker stress tests, run in separate processes with the try-out's
environment (no CELERY_BROKER_URL): a Celery task that leaves a file per message, and
producers/consumers that use the portal's own broker connection directly.

    python -m tests.embedded_broker_load produce <queue> <producer> <count> <pad bytes>
        [<big bytes> <big every>]
    python -m tests.embedded_broker_load consume <queue> <stop file>
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from queue import Empty

from celery import shared_task


@shared_task(name="tests.embedded_broker.record", ignore_result=True)
def record(directory: str, message_id: str, padding: str = "") -> None:
    # `padding` makes a message bigger (slower to write), as a large task argument would.
    # One file per message that ran: the test's own directory, shared with nobody.
    (Path(directory) / message_id).touch()


def produce(
    queue_name: str, producer: str, count: int, pad: int, big: int = 0, big_every: int = 0
) -> None:
    """Publish `count` messages of `pad` bytes; every `big_every`-th one of `big` bytes.
    kombu's own transport serializes a message after creating its file, so a big one
    leaves the file empty for milliseconds: long enough for a consumer to take it."""
    from opsportal.celery import app

    with app.connection_for_write() as connection:
        queue = connection.SimpleQueue(queue_name)
        for i in range(count):
            size = big if big_every and i % big_every == 0 else pad
            queue.put({"id": f"{producer}-{i}", "pad": "x" * size})
        queue.close()
    print(json.dumps({"published": count}))


def consume(queue_name: str, stop_file: str) -> None:
    """Take messages as fast as they come until told to stop and the queue is empty;
    report what was taken and every error met (a decode error is a lost message)."""
    from opsportal.celery import app

    taken, errors = [], []
    with app.connection_for_write() as connection:
        queue = connection.SimpleQueue(queue_name)
        while True:
            try:
                message = queue.get(block=False)
            except Empty:
                if Path(stop_file).exists():
                    try:
                        message = queue.get(block=False)
                    except Empty:
                        break
                else:
                    time.sleep(0.001)
                    continue
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                continue
            taken.append(message.payload["id"])
            message.ack()
        queue.close()
    print(json.dumps({"taken": taken, "errors": errors}))


if __name__ == "__main__":
    import django

    django.setup()
    command, *args = sys.argv[1:]
    if command == "produce":
        produce(args[0], args[1], *(int(a) for a in args[2:]))
    else:
        consume(args[0], args[1])
