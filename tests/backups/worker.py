"""The backup tests' worker: the shared launcher with the backup settings."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tests.workers import celery_worker, kill_worker, worker_log

__all__ = ["backup_worker", "kill_worker", "worker_log"]


@contextlib.contextmanager
def backup_worker(
    *, backup_root: Path, log_dir: Path, broker_url: str | None = None, **extra_env: str
) -> Iterator[subprocess.Popen]:
    """A solo-pool worker (the task runs in the process Popen started, so its pid is the
    one the backup row names) on this test run's database, writing into `backup_root`."""
    env = {
        "DJANGO_SETTINGS_MODULE": "tests.backups.worker_settings",
        "BACKUP_ROOT": str(backup_root),
        **extra_env,
    }
    with celery_worker(
        broker_url=broker_url, log_dir=log_dir, name_prefix="bk", env=env
    ) as process:
        yield process
