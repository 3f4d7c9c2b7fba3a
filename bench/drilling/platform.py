"""The platform copy the fault drills run against (bench/drills.py): a private PostgreSQL
server, the API, worker and memory-hungry containers on the test engine, and the portal's
own database, worker and beat. Everything is removed again by `Platform.close()`."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))
ADMIN_DSN = os.environ.get("OPSPORTAL_TEST_PG_DSN", "postgres://postgres@127.0.0.1:5432/postgres")
DOCKER_HOST = os.environ.get("OPSPORTAL_TEST_DOCKER_HOST", "unix:///var/run/docker.sock")
REDIS_URL = os.environ.get("OPSPORTAL_TEST_REDIS_URL", "redis://127.0.0.1:6379")
# the drills' own broker and cache-target db (flushed at start and end)
REDIS_DB = int(os.environ.get("OPSPORTAL_DRILLS_REDIS_DB", "3"))
PORTAL_DB = f"opsportal_drills_{os.getpid()}"
IMAGE = "opsportal-test/busybox:1"
MAX_CONNECTIONS = 20
DETECT_TARGET_S = 90.0
MAX_SUBMISSIONS = 3  # form submissions from the overview to a mitigated incident
ALL_DRILLS = ("api", "db-idle", "db-long", "db-idle-tx", "crash-loop", "memory")


def admin(statement: str) -> None:
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(statement)


def wait_for(predicate, timeout: float, step: float = 1.0):
    """Poll `predicate` until it returns something truthy, for at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(step)


@dataclass
class Drill:
    key: str
    issue: str  # the runbook's Common Issue
    fault: str
    rule: str
    system: object
    subject: str
    step_text: str
    params: dict
    cleared_metric: str
    cleared: object  # value -> bool
    inject: object  # () -> None
    release: object = None  # () -> None: the drill's own leftovers, after measuring
    target: object = None
    # measured
    injected_at: object = None
    detected_at: object = None
    detected_value: float | None = None
    incident: object = None
    operation: object = None
    cleared_at: object = None
    mitigated_at: object = None  # the operator marked the incident mitigated
    submissions: int | None = None  # forms the operator submitted from the overview
    resolved_at: object = None
    notes: list[str] = field(default_factory=list)


class Platform:
    """The containers, the private PostgreSQL server and the worker; removed by close()."""

    def __init__(self, workdir: Path):
        import docker

        self.workdir = workdir
        self.label = f"opsportal-drills-{uuid.uuid4().hex[:8]}"
        self.docker = docker.DockerClient(base_url=DOCKER_HOST, timeout=60)
        self.pg_data = workdir / "pg"
        self.pg_port = None
        self.worker = None
        self.held: list[psycopg.Connection] = []

    # --- PostgreSQL with a small max_connections ---------------------------------------
    def start_postgres(self) -> int:
        from tests import realsystems

        if os.geteuid() == 0:
            shutil.chown(self.workdir, "postgres")
        self.pg_port = realsystems.free_port()
        run = realsystems._as_postgres_user
        subprocess.run(
            run([str(realsystems.PG_BIN / "initdb"), "-D", str(self.pg_data), "-U", "postgres",
                 "--auth=trust", "-E", "UTF8"]),
            check=True, capture_output=True,
        )  # fmt: skip
        subprocess.run(
            run([str(realsystems.PG_BIN / "pg_ctl"), "-D", str(self.pg_data), "-l",
                 str(self.workdir / "pg.log"), "-o",
                 f"-p {self.pg_port} -k {self.workdir} -c listen_addresses=127.0.0.1 "
                 f"-c max_connections={MAX_CONNECTIONS} -c superuser_reserved_connections=0 "
                 "-c shared_buffers=16MB", "-w", "start"]),
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        return self.pg_port

    def connect(self, count: int, *, transaction: bool = False) -> list[psycopg.Connection]:
        conns = []
        for _ in range(count):
            conn = psycopg.connect(
                host="127.0.0.1", port=self.pg_port, dbname="postgres", user="postgres",
                autocommit=not transaction, connect_timeout=5, application_name="drill-client",
            )  # fmt: skip
            conns.append(conn)
        self.held += conns
        return conns

    def release_connections(self) -> None:
        for conn in self.held:
            with contextlib.suppress(Exception):
                conn.close()
        self.held = []

    # --- containers ----------------------------------------------------------------------
    def container(self, name: str, command, *, start: bool = True, files=None, **kwargs):
        container = self.docker.containers.create(
            IMAGE, command, name=f"{self.label}-{name}", labels={"opsportal-drills": self.label},
            network_mode="host", **kwargs,
        )  # fmt: skip
        if files:
            from tests.drillkit import put_files

            put_files(container, files)
        if start:
            container.start()
        return container

    def exec(self, container, command: str) -> None:
        result = container.exec_run(["sh", "-c", command])
        if result.exit_code != 0:
            raise RuntimeError(f"{command!r} in {container.name}: {result.output!r}")

    # --- the portal's worker and beat -------------------------------------------------------
    def start_worker(self, env: dict) -> None:
        log = open(self.workdir / "worker.log", "wb")  # noqa: SIM115 (closed with the process)
        self.worker = subprocess.Popen(
            [str(Path(sys.executable).parent / "celery"), "-A", "opsportal", "worker", "--beat",
             "--concurrency=2", "--without-mingle", "--without-gossip", "-n",
             f"drills-{os.getpid()}@localhost", "-l", "WARNING",
             "-s", str(self.workdir / "beat-schedule")],
            env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    def close(self) -> None:
        self.release_connections()
        if self.worker and self.worker.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.worker.pid, signal.SIGTERM)
            try:
                self.worker.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.worker.pid, signal.SIGKILL)
                self.worker.wait(10)
        for container in self.docker.containers.list(
            all=True, filters={"label": f"opsportal-drills={self.label}"}
        ):
            with contextlib.suppress(Exception):
                container.remove(force=True)
        self.docker.close()
        if self.pg_port:
            from tests import realsystems

            subprocess.run(
                realsystems._as_postgres_user(
                    [str(realsystems.PG_BIN / "pg_ctl"), "-D", str(self.pg_data), "-m",
                     "immediate", "stop"]
                ),
                check=False, capture_output=True, timeout=60,
            )  # fmt: skip
