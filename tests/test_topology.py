"""The production topology, run for real: PostgreSQL for the portal, RabbitMQ (its own
virtual host) or Redis as the broker, two worker processes with different host names on
different queues, one beat and gunicorn.

Operations and a backup are requested from a separate portal process (as a web process
requests them), the worker running a long operation is SIGKILLed, and every piece of work
ends: what was queued runs on the other worker, the killed operation is failed with
"worker died" by the sweeper, the backup leaves no half-written file, and nothing runs
twice."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator

import psycopg
import pytest
import requests
from django.contrib.auth import get_user_model
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from backups.models import Backup, BackupStatus
from incidents.models import Incident, TimelineKind
from opsportal.audit.models import AuditRecord
from opsportal.health.models import Heartbeat
from opsportal.operations.models import Operation, OperationStatus
from opsportal.operations.services import operations_sweep
from opsportal.systems.models import PostgresDatabase
from tests import realsystems
from tests.workers import (
    BIN,
    PROJECT_ROOT,
    RedisBroker,
    celery_beat,
    celery_worker,
    kill_worker,
    run_in_portal_process,
    wait_until,
    worker_log,
)
from tests.workers import test_database_env as portal_env

pytestmark = pytest.mark.django_db(transaction=True)

PREFIX = os.environ.get("OPSPORTAL_TEST_TARGET_DB", "opsportal_target")
TOPOLOGY_DB = f"{PREFIX}_topology"
RABBITMQ_URL = os.environ.get("OPSPORTAL_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672")


def _rabbitmqctl(*args: str) -> None:
    result = subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {result.stderr or result.stdout}")


@contextlib.contextmanager
def rabbitmq_vhost() -> Iterator[str]:
    """A virtual host of its own on the machine's RabbitMQ, removed afterwards."""
    vhost = f"opsportal-test-{uuid.uuid4().hex[:8]}"
    _rabbitmqctl("add_vhost", vhost)
    try:
        _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield f"{RABBITMQ_URL}/{vhost}"
    finally:
        _rabbitmqctl("delete_vhost", vhost)


@contextlib.contextmanager
def redis_broker() -> Iterator[str]:
    broker = RedisBroker()
    broker.start()
    try:
        yield broker.url
    finally:
        broker.cleanup()


@contextlib.contextmanager
def gunicorn(broker_url: str) -> Iterator[str]:
    port = realsystems.free_port()
    env = {
        **portal_env(broker_url),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WEB_CONCURRENCY": "2",
        "WEB_ACCESS_LOG": "0",
    }
    process = subprocess.Popen(
        [str(BIN / "gunicorn"), "opsportal.wsgi", "-c", "deploy/gunicorn.conf.py"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        realsystems.wait_for_port(port, timeout=30)
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(20)


@pytest.fixture
def topology_database(db) -> Iterator[PostgresDatabase]:
    admin = os.environ["OPSPORTAL_TEST_PG_DSN"]
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{TOPOLOGY_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{TOPOLOGY_DB}"')
    with psycopg.connect(admin.rsplit("/", 1)[0] + "/" + TOPOLOGY_DB, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id int primary key, note text)")
        conn.execute("INSERT INTO orders SELECT g, 'order ' || g FROM generate_series(1, 5000) g")
    info = psycopg.conninfo.conninfo_to_dict(admin)
    yield PostgresDatabase.objects.create(
        name="orders-db",
        host=info.get("host", "127.0.0.1"),
        port=int(info.get("port", 5432)),
        username=info.get("user", "postgres"),
        dbname=TOPOLOGY_DB,
        connect_timeout_seconds=3,
    )
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{TOPOLOGY_DB}" WITH (FORCE)')


def _request_in_portal_process(broker_url: str, code: str) -> list[int]:
    out = run_in_portal_process(
        "from django.contrib.auth import get_user_model\n"
        "actor = get_user_model().objects.get(username='olga')\n" + code,
        broker_url=broker_url,
    )
    return [int(line.split()[1]) for line in out.splitlines() if line.startswith("requested ")]


@pytest.mark.parametrize("broker_kind", ["rabbitmq", "redis"])
def test_two_workers_on_their_queues_survive_one_being_killed(
    broker_kind, tmp_path, http_endpoint, http_server, redis_target, topology_database
):
    get_user_model().objects.create_superuser("olga", "olga@example.com", "pw-olga-123!")
    incident = Incident.objects.create(title="slow api", detected_at=dt.datetime.now(dt.UTC))
    incident.affected_systems.add(http_endpoint, redis_target)
    PeriodicTask.objects.create(
        name="Beat heartbeat",
        task="health.beat_heartbeat",
        interval=IntervalSchedule.objects.create(every=30, period=IntervalSchedule.SECONDS),
    )
    backup_root = tmp_path / "backups"
    http_server.behaviour.delay_seconds = 0.5
    broker = rabbitmq_vhost() if broker_kind == "rabbitmq" else redis_broker()
    worker_env = {
        "DJANGO_SETTINGS_MODULE": "tests.backups.worker_settings",
        "BACKUP_ROOT": str(backup_root),
    }
    with (
        broker as broker_url,
        gunicorn(broker_url) as web,
        celery_worker(
            broker_url=broker_url,
            log_dir=tmp_path,
            name_prefix="host-a",
            env=worker_env,
            extra_args=("-Q", "default,collect,operations"),
        ) as host_a,
        celery_beat(tmp_path, broker_url=broker_url),
    ):
        assert requests.get(f"{web}/health", timeout=30).ok
        # Beat's heartbeat goes to the default queue: only host A consumes it.
        wait_until(lambda: Heartbeat.objects.filter(name="beat").exists(), "beat's heartbeat")
        assert "health.beat_heartbeat" in worker_log(host_a)
        # Host A takes the long probe first (its only slot is then busy).
        [probe_id] = _request_in_portal_process(
            broker_url,
            "from opsportal.operations.services import operation_request\n"
            "from incidents.models import Incident\n"
            "from opsportal.systems.models import HttpEndpoint\n"
            f"target = HttpEndpoint.objects.get(pk={http_endpoint.pk})\n"
            f"incident = Incident.objects.get(pk={incident.pk})\n"
            "op = operation_request(kind='api_probe', target=target, params={'count': 60},"
            " actor=actor, incident=incident)\n"
            "print('requested', op.pk)",
        )
        wait_until(
            lambda: Operation.objects.get(pk=probe_id).status == OperationStatus.RUNNING,
            "the probe to run on host A",
        )
        with celery_worker(
            broker_url=broker_url,
            log_dir=tmp_path,
            name_prefix="host-b",
            env=worker_env,
            extra_args=("-Q", "operations,backups"),
        ) as host_b:
            kill_worker(host_a)
            probes_when_killed = len(http_server.requests)

            # Work requested while host A is dead: host B serves the queues it shares.
            requested = _request_in_portal_process(
                broker_url,
                "from opsportal.operations.services import operation_request\n"
                "from opsportal.systems.models import RedisCache, PostgresDatabase\n"
                "from backups.services import backup_request\n"
                f"cache = RedisCache.objects.get(pk={redis_target.pk})\n"
                "for n in range(3):\n"
                "    op = operation_request(kind='cache_statistics', target=cache, params={},"
                " actor=actor, reason=f'check {n}')\n"
                "    print('requested', op.pk)\n"
                f"database = PostgresDatabase.objects.get(pk={topology_database.pk})\n"
                "backup = backup_request(database=database, actor=actor, reason='before deploy')\n"
                "print('requested', backup.pk)",
            )
            *operation_ids, backup_id = requested
            for pk in operation_ids:
                done = wait_until(
                    lambda pk=pk: Operation.objects.filter(
                        pk=pk, status__in=[OperationStatus.SUCCEEDED, OperationStatus.FAILED]
                    ).first(),
                    f"operation {pk} to finish on host B",
                )
                assert done.status == OperationStatus.SUCCEEDED, done.error
            backup = wait_until(
                lambda: Backup.objects.filter(
                    pk=backup_id, status__in=[BackupStatus.SUCCEEDED, BackupStatus.FAILED]
                ).first(),
                "the backup to finish on host B",
                timeout=120,
            )
            assert backup.status == BackupStatus.SUCCEEDED, backup.message
            log_b = worker_log(host_b)
            assert log_b.count("operations.execute") >= 3 and "backups.run" in log_b

    # The probe host A was running stays running: nobody finishes it, and host B, even if
    # the broker handed it the message again, did not run it a second time.
    probe = Operation.objects.get(pk=probe_id)
    assert probe.status == OperationStatus.RUNNING
    assert len(http_server.requests) == probes_when_killed
    later = probe.started_at + dt.timedelta(seconds=probe.time_limit_seconds + 31)
    assert operations_sweep(now=later)["orphaned"] == 1
    probe.refresh_from_db()
    assert probe.status == OperationStatus.FAILED
    assert "The worker running it stopped answering" in probe.error
    failed_event = incident.timeline.filter(kind=TimelineKind.OPERATION).last()
    assert "The worker running it stopped answering" in failed_event.message

    # Nothing ran twice: each operation has one outcome recorded, and the backup root
    # holds exactly the finished backup's file (no partial one).
    for pk in operation_ids:
        outcomes = AuditRecord.objects.filter(
            object_type="operations.operation", object_id=str(pk), outcome="success"
        )
        assert outcomes.count() == 1
    files = sorted(p.name for p in backup_root.rglob("*") if p.is_file())
    assert files and all(backup.file_name.split("/")[-1] in name for name in files), files
    assert not [name for name in files if "partial" in name]
    shutil.rmtree(backup_root, ignore_errors=True)
