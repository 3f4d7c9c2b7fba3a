"""Real Celery worker processes (and a real broker that can be stopped) for tests and the
benches that need them: one launcher for every app's worker tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import redis
from django.conf import settings
from django.db import connection

from tests import realsystems

BIN = Path(sys.executable).parent


def test_database_env(broker_url: str | None = None) -> dict[str, str]:
    """The environment of a process that uses this test run's database (and broker)."""
    env = dict(os.environ)
    name = connection.settings_dict["NAME"]
    env["DATABASE_URL"] = env["DATABASE_URL"].rsplit("/", 1)[0] + "/" + name
    if broker_url:
        env["CELERY_BROKER_URL"] = broker_url
    return env


PROJECT_ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def celery_worker(
    *,
    broker_url: str | None = None,
    log_dir: Path | None = None,
    pool: str = "solo",
    concurrency: int = 1,
    name_prefix: str = "test",
    env: dict[str, str] | None = None,
    extra_args: tuple[str, ...] = (),
) -> Iterator[subprocess.Popen]:
    """A worker for this test's database, started the way production starts one, in its
    own process group (killing the group takes its children, e.g. pg_dump, with it, as a
    host crash or an OOM kill would). pool="solo" runs tasks in the process Popen started
    (its pid is the one rows name); pool="prefork" is production's pool, the one that
    enforces soft and hard time limits (solo ignores them). `env` adds to the environment,
    `extra_args` to the command line (e.g. --include of a test's task module).
    The process carries `.name` (its Celery hostname) and `.log_path`."""
    process_env = {**test_database_env(broker_url), **(env or {})}
    name = f"{name_prefix}-{uuid.uuid4().hex[:8]}@localhost"
    log_dir = Path(log_dir or tempfile.mkdtemp(prefix="opsportal-worker-"))
    log_path = log_dir / f"worker-{name.split('@')[0]}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                str(BIN / "celery"),
                "-A",
                "opsportal",
                "worker",
                f"--pool={pool}",
                f"--concurrency={concurrency}",
                "--without-mingle",
                "--without-gossip",
                "-n",
                name,
                "-l",
                "INFO",
                *extra_args,
            ],
            env=process_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=PROJECT_ROOT,
            start_new_session=True,
        )
    process.name = name
    process.log_path = log_path
    try:
        deadline = time.monotonic() + 30
        while b"ready." not in log_path.read_bytes():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("The worker did not start:\n" + log_path.read_text()[-3000:])
            time.sleep(0.1)
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)


@contextlib.contextmanager
def celery_beat(
    log_dir: Path, *, broker_url: str | None = None, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen]:
    """One beat for this test's database, started as deploy/Procfile starts it (the
    database scheduler); its log is `log_dir`/beat.log."""
    log_path = log_dir / "beat.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                str(BIN / "celery"),
                "-A",
                "opsportal",
                "beat",
                "--loglevel",
                "INFO",
                "--scheduler",
                "django_celery_beat.schedulers:DatabaseScheduler",
                "--pidfile",
                str(log_dir / "beat.pid"),
            ],
            env={**test_database_env(broker_url), **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=PROJECT_ROOT,
            start_new_session=True,
        )
    process.log_path = log_path
    try:
        yield process
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(15)


def wait_until(predicate, what: str, timeout: float = 60.0):
    """Poll `predicate` until it returns something true (returned), or fail naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def worker_log(process: subprocess.Popen) -> str:
    return process.log_path.read_text(errors="replace")


def kill_worker(process: subprocess.Popen) -> None:
    """SIGKILL the worker and its children: what a crashed host or an OOM kill does."""
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)


def clear_queue(broker_url: str) -> None:
    client = redis.Redis.from_url(broker_url)
    client.delete(*settings.WORKER_QUEUES)
    client.close()


def queued_tasks(broker_url: str) -> list[tuple[str, object]]:
    """(task name, first argument) of every message waiting in the broker's queues: what has
    been dispatched and not yet taken by a worker."""
    import base64
    import json

    client = redis.Redis.from_url(broker_url)
    found = []
    for queue in settings.WORKER_QUEUES:
        for raw in client.lrange(queue, 0, -1):
            message = json.loads(raw)
            args = json.loads(base64.b64decode(message["body"]))[0]
            found.append((message["headers"]["task"], args[0] if args else None))
    client.close()
    return found


class RedisBroker:
    """A private redis-server on a free port that can be stopped and started again."""

    def __init__(self) -> None:
        self.port = realsystems.free_port()
        self.dir = tempfile.mkdtemp(prefix="opsportal-broker-")
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        realsystems.wait_for_port(self.port)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def run_in_portal_process(
    code: str, *, broker_url: str | None = None, env: dict[str, str] | None = None
) -> str:
    """Run Python in a separate portal process (its own Celery app and broker connection)."""
    result = subprocess.run(
        [str(BIN / "python"), "manage.py", "shell", "-c", code],
        env={**test_database_env(broker_url), **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=PROJECT_ROOT,
    )
    if result.returncode != 0:
        raise RuntimeError(result.stdout + result.stderr)
    return result.stdout
