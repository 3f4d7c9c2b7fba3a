"""The try-out's embedded broker (no CELERY_BROKER_URL) under concurrent producers and
consumers: no message lost, no crash. kombu's own filesystem transport lets a consumer read
a message file before its writer has written it, which killed the try-out's worker with
JSONDecodeError after about an hour (issue 16, failure 6); here the race is made frequent
with messages of 20 KB, and a real Celery worker consumes while producers publish."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests import workers
from tests.workers import BIN, PROJECT_ROOT, celery_worker, worker_log

pytestmark = pytest.mark.django_db(transaction=True)

PRODUCERS = 4


@pytest.fixture
def embedded_broker_env(tmp_path) -> dict[str, str]:
    """The environment `make run` gives its processes: no broker server, var/ in tmp."""
    env = workers.test_database_env()  # by module: pytest would collect test_database_env
    env["CELERY_BROKER_URL"] = "filesystem://"  # what settings use when none is set
    env["OPSPORTAL_VAR_DIR"] = str(tmp_path / "var")
    env["DJANGO_SETTINGS_MODULE"] = "opsportal.settings"
    return env


def load_process(env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN / "python"), "-m", "tests.embedded_broker_load", *args],
        env=env,
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finished(process: subprocess.Popen, timeout: float) -> dict:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def leftovers(env: dict[str, str]) -> dict[str, list[str]]:
    broker = Path(env["OPSPORTAL_VAR_DIR"]) / "broker"
    return {
        folder: sorted(p.name for p in (broker / folder).iterdir())
        for folder in ("staging", "claimed", "rejected")
        if (broker / folder).is_dir()
    }


def test_concurrent_producers_and_consumers_lose_nothing(embedded_broker_env, tmp_path):
    """4 producers of 1,000 messages of 20 KB, two consumers taking them meanwhile."""
    queue, each = f"stress-{uuid.uuid4().hex[:8]}", 1000
    stop = tmp_path / "producers-done"
    consumers = [load_process(embedded_broker_env, "consume", queue, str(stop)) for _ in "ab"]
    producers = [
        load_process(embedded_broker_env, "produce", queue, f"p{p}", str(each), "20000")
        for p in range(PRODUCERS)
    ]
    for producer in producers:
        assert finished(producer, 60)["published"] == each
    stop.touch()
    reports = [finished(consumer, 60) for consumer in consumers]

    errors = [error for report in reports for error in report["errors"]]
    taken = [message for report in reports for message in report["taken"]]
    assert errors == [], f"{len(errors)} errors, e.g. {errors[:3]}"
    assert len(taken) == len(set(taken)), "a message was delivered twice"
    assert set(taken) == {f"p{p}-{i}" for p in range(PRODUCERS) for i in range(each)}
    assert all(names == [] for names in leftovers(embedded_broker_env).values())


def test_a_celery_worker_consumes_every_message_of_concurrent_producers(
    embedded_broker_env, tmp_path
):
    """make run's worker (prefork, two processes) consumes while 4 producers publish
    500 tasks each through the portal's Celery app: every task leaves its mark, the worker
    is still alive and logged no traceback."""
    each = 500
    marks = tmp_path / "marks"
    marks.mkdir()
    expected = {f"p{p}-{i}" for p in range(PRODUCERS) for i in range(each)}
    publish = (
        "import sys, django\ndjango.setup()\nfrom opsportal.celery import app\n"
        "marks, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])\n"
        "with app.producer_or_acquire() as producer:\n"
        "    for i in range(count):\n"
        "        app.send_task('tests.embedded_broker.record', args=[marks, f'{name}-{i}'],"
        " producer=producer)\n"
        "print('{\"published\": %d}' % count)\n"
    )

    def consumed() -> set[str]:
        return {path.name for path in marks.iterdir()}

    with celery_worker(
        env=embedded_broker_env,
        pool="prefork",
        concurrency=2,
        log_dir=tmp_path,
        name_prefix="broker",
        extra_args=("--include", "tests.embedded_broker_load"),
    ) as worker:
        producers = [
            subprocess.Popen(
                [str(BIN / "python"), "-c", publish, str(marks), f"p{p}", str(each)],
                env=embedded_broker_env,
                cwd=PROJECT_ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for p in range(PRODUCERS)
        ]
        for producer in producers:
            assert finished(producer, 60)["published"] == each
        deadline = time.monotonic() + 60
        while len(consumed()) < len(expected) and worker.poll() is None:
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        alive = worker.poll() is None
        log = worker_log(worker)

    lost = expected - consumed()
    assert alive, "the worker died:\n" + log[-4000:]
    assert not lost, f"{len(lost)} of {len(expected)} tasks never ran:\n" + log[-3000:]
    assert "Traceback" not in log and "JSONDecodeError" not in log, log[-4000:]
    assert all(names == [] for names in leftovers(embedded_broker_env).values())
