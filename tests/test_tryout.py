"""The try-out portal (`make run`): web, worker and beat under supervisord, started for real
from deploy/supervisord.conf with the embedded broker, a temporary var dir, a free port and
this test run's database. A worker that dies must not take the web down (honcho, used
before, stopped everything; issue 16, failure 5): /health keeps answering,
/health/detailed shows the worker down, and a new worker is started."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
import requests

from tests import realsystems, workers
from tests.workers import BIN, PROJECT_ROOT

pytestmark = pytest.mark.django_db(transaction=True)

HEALTH_TOKEN = "tryout-health-token-0123456789"


class TryOut:
    def __init__(self, env: dict[str, str], process: subprocess.Popen, log: Path) -> None:
        self.env, self.process, self.log = env, process, log
        self.url = f"http://127.0.0.1:{env['PORT']}"

    def supervisorctl(self, *args: str) -> str:
        return subprocess.run(
            [str(BIN / "supervisorctl"), "-c", "deploy/supervisord.conf", *args],
            env=self.env,
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip()

    def pid(self, program: str) -> int:
        """The program's pid, 0 while it is not running."""
        out = self.supervisorctl("pid", program)
        return int(out) if out.isdigit() else 0

    def health(self) -> int:
        return requests.get(f"{self.url}/health", timeout=5).status_code

    def workers_check(self) -> dict:
        response = requests.get(
            f"{self.url}/health/detailed",
            headers={"Authorization": f"Bearer {HEALTH_TOKEN}"},
            timeout=15,
        )
        return {c["name"]: c for c in response.json()["checks"]}["workers"]

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-5000:]


def await_(condition: Callable[[], object], timeout: float, what: str, tryout: TryOut):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"{what} within {timeout:g} s\n{tryout.output()}")


@pytest.fixture
def tryout(tmp_path) -> Iterator[TryOut]:
    env = workers.test_database_env()  # by module: pytest would collect test_database_env
    env.update(
        CELERY_BROKER_URL="filesystem://",  # the embedded broker, as with no URL set
        OPSPORTAL_VAR_DIR=str(tmp_path / "var"),
        OPSPORTAL_RUN_DIR=str(tmp_path / "run"),
        HOST="127.0.0.1",
        PORT=str(realsystems.free_port()),
        HEALTH_TOKEN=HEALTH_TOKEN,
        HEALTH_CRITICAL_CHECKS="database,broker,workers",
        WEB_CONCURRENCY="1",
        DJANGO_SETTINGS_MODULE="opsportal.settings",
    )
    (tmp_path / "run").mkdir()
    log = tmp_path / "supervisord.out"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(BIN / "supervisord"), "-c", "deploy/supervisord.conf"],
            env=env,
            cwd=PROJECT_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    tryout = TryOut(env, process, log)
    try:
        yield tryout
    finally:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                for child in psutil.Process(process.pid).children(recursive=True):
                    child.kill()
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def answers(tryout: TryOut) -> bool:
    with contextlib.suppress(requests.RequestException):
        return tryout.health() == 200
    return False


def test_a_killed_worker_or_beat_is_restarted_while_the_web_keeps_serving(tryout):
    await_(lambda: answers(tryout), 60, "the web did not answer /health", tryout)
    await_(
        lambda: tryout.workers_check()["status"] == "ok",
        60,
        "/health/detailed never saw the worker",
        tryout,
    )
    worker = psutil.Process(tryout.pid("worker"))
    pool = worker.children()
    assert pool, "the worker's prefork pool is missing"

    worker.kill()  # SIGKILL: what the OOM killer does

    # The web goes on answering, and tells the truth about the worker meanwhile.
    down = await_(
        lambda: (check := tryout.workers_check())["status"] != "ok" and check,
        30,
        "/health/detailed never reported the worker down",
        tryout,
    )
    assert "No Celery worker answered" in down["message"]
    assert tryout.health() == 200
    new_pid = await_(
        lambda: (pid := tryout.pid("worker")) not in (0, worker.pid) and pid,
        60,
        "no new worker was started",
        tryout,
    )
    up = await_(
        lambda: (check := tryout.workers_check())["status"] == "ok" and check,
        60,
        "the new worker never answered /health/detailed's ping",
        tryout,
    )
    assert up["message"].startswith("answering: worker@")
    assert tryout.health() == 200
    # The dead worker's pool processes went with it.
    await_(
        lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in pool),
        30,
        "the killed worker's pool processes were left running",
        tryout,
    )
    assert psutil.Process(new_pid).is_running()

    beat = tryout.pid("beat")
    os.kill(beat, signal.SIGKILL)
    await_(
        lambda: tryout.pid("beat") not in (0, beat),
        60,
        "no new beat was started",
        tryout,
    )
    assert tryout.health() == 200


def test_ctrl_c_stops_web_worker_and_beat(tryout):
    await_(lambda: answers(tryout), 60, "the web did not answer /health", tryout)
    await_(lambda: tryout.workers_check()["status"] == "ok", 60, "no worker answered", tryout)
    # Beat installs its SIGTERM handler (which saves the schedule and exits 0) just before it
    # logs this line; a beat still importing Django is ended by the default SIGTERM action.
    await_(
        lambda: "beat: Starting..." in tryout.log.read_text(errors="replace"),
        60,
        "beat did not start",
        tryout,
    )
    processes = [psutil.Process(tryout.process.pid)]
    processes += processes[0].children(recursive=True)
    assert len(processes) >= 6  # supervisord, gunicorn + 1 worker, celery + 2 pool, beat

    tryout.process.send_signal(signal.SIGINT)  # what Ctrl-C in `make run` delivers

    assert tryout.process.wait(60) == 0
    _gone, alive = psutil.wait_procs(processes, timeout=10)
    assert alive == [], f"still running after Ctrl-C: {alive}"
    assert not answers(tryout)
    # Each stopped on its own (warm shutdown), none had to be SIGKILLed.
    log = (Path(tryout.env["OPSPORTAL_RUN_DIR"]) / "supervisord.log").read_text()
    assert "SIGKILL" not in log, log
    for program in ("web", "worker", "beat"):
        assert f"stopped: {program} (exit status 0)" in log, log
