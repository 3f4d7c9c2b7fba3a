"""A real Celery worker process for the backup tests, started the way production starts
one, so it can be killed (SIGKILL, no clean-up) in the middle of a backup."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from tests.operations.worker import test_database_env

BIN = Path(sys.executable).parent
PROJECT_ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def backup_worker(
    *, backup_root: Path, log_dir: Path, broker_url: str | None = None, **extra_env: str
) -> Iterator[subprocess.Popen]:
    """A solo-pool worker (the task runs in the process Popen started, so its pid is the
    one the backup row names) on this test run's database, writing into `backup_root`."""
    env = test_database_env(broker_url)
    env.update(
        DJANGO_SETTINGS_MODULE="tests.backups.worker_settings",
        BACKUP_ROOT=str(backup_root),
        **extra_env,
    )
    name = f"bk-{uuid.uuid4().hex[:8]}@localhost"
    log_path = Path(log_dir) / f"worker-{name.split('@')[0]}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                str(BIN / "celery"),
                "-A",
                "opsportal",
                "worker",
                "--pool=solo",
                "--concurrency=1",
                "--without-mingle",
                "--without-gossip",
                "-n",
                name,
                "-l",
                "INFO",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=PROJECT_ROOT,
            # Its own process group: killing the group takes pg_dump with it, as a host
            # crash or an OOM kill of the container would.
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


def kill_worker(process: subprocess.Popen) -> None:
    """SIGKILL the worker and its children: nothing gets to clean up."""
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)


def worker_log(process: subprocess.Popen) -> str:
    return process.log_path.read_text(errors="replace")
