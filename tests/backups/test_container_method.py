"""The container method: pg_dump runs inside the database's container via docker exec, on
the test Docker engine, with an image built from the host's PostgreSQL client binaries."""

import contextlib
import uuid

import docker
import pytest

from backups import services
from backups.models import BackupStatus, RestoreStatus, Verification
from backups.tasks import run_backup
from tests.backups.conftest import table_contents_digest

pytestmark = pytest.mark.docker

PG_CLIENT_IMAGE = "opsportal-test/pg-client:15"


@pytest.fixture
def container(docker_client):
    started = []

    def start(image: str):
        name = f"opsportal-h3-pg-{uuid.uuid4().hex[:8]}"
        started.append(name)
        docker_client.containers.run(
            image, ["sleep", "3600"], name=name, detach=True, network_mode="host"
        )
        return name

    yield start
    for name in started:
        with contextlib.suppress(docker.errors.NotFound):
            docker_client.containers.get(name).remove(force=True)


def containerised(database, docker_engine, container_name):
    database.host = ""  # reached at its container's address, as a containerised database is
    database.docker_engine = docker_engine
    database.container_name = container_name
    database.save()
    plan = services.backup_plan_ensure(database=database)
    plan.method = "container"
    services.backup_plan_save(plan=plan)
    return database


def test_container_method_round_trips(
    source_database, second_database, docker_engine, container, superuser
):
    database = containerised(source_database, docker_engine, container(PG_CLIENT_IMAGE))
    backup = services.backup_request(database=database)
    run_backup.apply(args=[backup.pk])
    backup.refresh_from_db()

    assert backup.status == BackupStatus.SUCCEEDED, backup.message
    assert backup.method == "container"
    assert backup.verification == Verification.VERIFIED, backup.verification_message
    assert backup.table_row_counts["public.pgbench_accounts"] == 100_000

    restore = services.restore_request(
        backup=backup,
        target=second_database,
        actor=superuser,
        reason="copy",
        confirmation=second_database.name,
    )
    services.restore_run(restore_id=restore.pk)
    restore.refresh_from_db()
    assert restore.status == RestoreStatus.SUCCEEDED, restore.message
    assert table_contents_digest(second_database.dbname) == table_contents_digest(
        source_database.dbname
    )


def test_container_without_pg_dump_gives_a_clear_message(
    source_database, docker_engine, container, backup_root
):
    database = containerised(source_database, docker_engine, container("opsportal-test/busybox:1"))
    backup = services.backup_request(database=database)
    run_backup.apply(args=[backup.pk])
    backup.refresh_from_db()

    assert backup.status == BackupStatus.FAILED
    assert "is it installed there?" in backup.message
    assert [p for p in backup_root.rglob("*") if p.is_file()] == []


def test_stopped_container_fails_the_backup(
    source_database, docker_engine, container, docker_client, backup_root
):
    name = container(PG_CLIENT_IMAGE)
    database = containerised(source_database, docker_engine, name)
    database.host = "127.0.0.1"  # the server itself is up; only the container is stopped
    database.save()
    docker_client.containers.get(name).stop(timeout=0)

    backup = services.backup_request(database=database)
    run_backup.apply(args=[backup.pk])
    backup.refresh_from_db()

    assert backup.status == BackupStatus.FAILED
    assert "is not running" in backup.message or "not running" in backup.message.lower()
    assert [p for p in backup_root.rglob("*") if p.is_file()] == []
