"""Soak of the try-out's embedded broker (opsportal/embedded_broker.py): producers and
consumers in separate processes, through the portal's own broker connection, for longer
than the test suite's stress test. Prints messages per second and, what matters, the
messages lost, delivered twice or unreadable (all must be 0).

    python bench/embedded_broker.py [producers] [messages each] [payload bytes] [consumers]

Defaults: 8 producers x 5,000 messages of 20 KB, 3 consumers. It needs no database or
broker server: the portal's settings are loaded with the embedded broker in a temporary
var directory (DEBUG on, SQLite there too), removed afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def run() -> int:
    producers, each, payload, consumers = (
        int(a) for a in (sys.argv[1:] + ["8", "5000", "20000", "3"][len(sys.argv[1:]) :])
    )
    var = Path(tempfile.mkdtemp(prefix="opsportal-broker-soak-"))
    env = {
        **os.environ,
        "DEBUG": "true",
        "CELERY_BROKER_URL": "filesystem://",
        "OPSPORTAL_VAR_DIR": str(var),
        "DATABASE_URL": f"sqlite:///{var / 'portal.sqlite3'}",
        "DJANGO_SETTINGS_MODULE": "opsportal.settings",
    }
    queue, stop = f"soak-{uuid.uuid4().hex[:8]}", var / "producers-done"

    def start(*args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [PYTHON, "-m", "tests.embedded_broker_load", *args],
            env=env,
            cwd=BASE_DIR,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def report(process: subprocess.Popen) -> dict:
        out, err = process.communicate()
        if process.returncode != 0:
            raise SystemExit(err[-3000:])
        return json.loads(out.strip().splitlines()[-1])

    try:
        started = time.monotonic()
        taking = [start("consume", queue, str(stop)) for _ in range(consumers)]
        publishing = [
            start("produce", queue, f"p{p}", str(each), str(payload)) for p in range(producers)
        ]
        for process in publishing:
            report(process)
        published_after = time.monotonic() - started
        stop.touch()
        reports = [report(process) for process in taking]
        elapsed = time.monotonic() - started
        taken = [m for r in reports for m in r["taken"]]
        errors = [e for r in reports for e in r["errors"]]
        expected = {f"p{p}-{i}" for p in range(producers) for i in range(each)}
        broker = var / "broker"
        left = sum(len(list((broker / d).iterdir())) for d in ("staging", "claimed", "rejected"))
        print(
            f"embedded broker: {producers} producers x {each} messages of {payload} B, "
            f"{consumers} consumers"
        )
        print(
            f"  published in {published_after:.1f} s, all taken in {elapsed:.1f} s "
            f"({len(taken) / elapsed:.0f} messages/s)"
        )
        print(
            f"  lost {len(expected - set(taken))}, delivered twice {len(taken) - len(set(taken))}, "
            f"errors {len(errors)}, files left behind {left}"
        )
        ok = set(taken) == expected and len(taken) == len(expected) and not errors and not left
        return 0 if ok else 1
    finally:
        shutil.rmtree(var, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(run())
