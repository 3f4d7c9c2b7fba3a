"""Faults produced for real: wrong password, closed port, full disk, killed pg_dump,
tampered and corrupt files, busy targets. Each gives a specific message and leaves nothing
half-done."""

import contextlib
import os
import subprocess
import threading
import time
import uuid

import psutil
import psycopg
import pytest

from backups import services
from backups.models import Backup, BackupStatus, RestoreStatus, Verification
from backups.tasks import run_backup
from tests.backups.conftest import admin_dsn, query, table_contents_digest
from tests.realsystems import free_port


def run(database, **kwargs) -> Backup:
    backup = services.backup_request(database=database, **kwargs)
    run_backup.apply(args=[backup.pk])
    backup.refresh_from_db()
    return backup


def files_under(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@contextlib.contextmanager
def small_filesystem(size: str):
    """A real tmpfs of `size`: writes beyond it fail with ENOSPC."""
    mountpoint = f"/tmp/opsportal-h3-full-{uuid.uuid4().hex[:8]}"
    os.makedirs(mountpoint)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", mountpoint], check=True)
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", mountpoint], check=False)
        os.rmdir(mountpoint)


def test_wrong_password_fails_with_a_clear_message(
    register_database, password_postgres_port, backup_root
):
    database = register_database(
        "secured-db", "postgres", port=password_postgres_port, password="not-the-password"
    )

    backup = run(database)

    assert backup.status == BackupStatus.FAILED
    assert "rejected the password for user 'postgres'" in backup.message
    assert "not-the-password" not in backup.message
    assert files_under(backup_root) == []


def test_right_password_reaches_pg_dump_through_the_passfile(
    register_database, password_postgres_port
):
    database = register_database(
        "secured-db", "postgres", port=password_postgres_port, password="s3cret-pg-password"
    )
    backup = run(database)
    assert backup.status == BackupStatus.SUCCEEDED, backup.message
    assert backup.verification == Verification.VERIFIED


def test_unreachable_target(register_database, backup_root):
    database = register_database("gone-db", "postgres", port=free_port())
    backup = run(database)
    assert backup.status == BackupStatus.FAILED
    assert "is not reachable: connection refused" in backup.message.lower()
    assert files_under(backup_root) == []


def test_disk_full_leaves_no_partial_file(source_database):
    with small_filesystem("256k") as mountpoint:
        plan = services.backup_plan_ensure(database=source_database)
        plan.storage_location = mountpoint
        services.backup_plan_save(plan=plan)

        backup = run(source_database)

        assert backup.status == BackupStatus.FAILED
        assert "No space left on the device holding" in backup.message
        assert backup.size_bytes is None and backup.sha256 == ""
        leftovers = [name for _, _, names in os.walk(mountpoint) for name in names]
        assert leftovers == []


def test_killed_pg_dump_leaves_no_file_that_looks_like_a_backup(source_database, backup_root):
    backup = services.backup_request(database=source_database)
    killed = []

    def kill_pg_dump():
        deadline = time.monotonic() + 20
        me = psutil.Process()
        while time.monotonic() < deadline and not killed:
            for child in me.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    if child.name() == "pg_dump":
                        child.kill()
                        killed.append(child.pid)
                        return
            time.sleep(0.005)

    killer = threading.Thread(target=kill_pg_dump)
    killer.start()
    services.backup_run(backup_id=backup.pk)
    killer.join()
    backup.refresh_from_db()

    assert killed, "pg_dump was never seen running"
    assert backup.status == BackupStatus.FAILED
    assert "pg_dump was killed (SIGKILL)" in backup.message
    assert files_under(backup_root) == []


def test_tampered_file_is_detected_and_not_restored(
    source_database, second_database, superuser, backup_root
):
    backup = run(source_database)
    path = backup_root / backup.file_name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))

    services.backup_verify(backup=backup)
    backup.refresh_from_db()
    assert backup.verification == Verification.FAILED
    assert backup.verification_message.startswith("Checksum mismatch")

    restore = services.restore_request(
        backup=backup,
        target=second_database,
        actor=superuser,
        reason="test",
        confirmation=second_database.name,
    )
    services.restore_run(restore_id=restore.pk)
    restore.refresh_from_db()
    assert restore.status == RestoreStatus.FAILED
    assert "Checksum mismatch" in restore.message and "nothing was restored" in restore.message
    assert restore.safety_backup is None


def test_corrupt_dump_restore_rolls_back_and_target_stays_intact(
    source_database, second_database, superuser, backup_root
):
    # The target holds data of its own that must survive the failed restore.
    query(second_database.dbname, "CREATE TABLE precious (id int)")
    query(second_database.dbname, "INSERT INTO precious SELECT generate_series(1, 7)")
    backup = run(source_database)
    # A dump corrupted before its checksum was taken (a faulty disk or pg_dump bug): the
    # checksum agrees, only the contents are wrong.
    path = backup_root / backup.file_name
    data = bytearray(path.read_bytes())
    for offset in range(len(data) * 3 // 4, len(data) * 3 // 4 + 64):
        data[offset] ^= 0x5A
    path.write_bytes(bytes(data))
    import hashlib

    Backup.objects.filter(pk=backup.pk).update(sha256=hashlib.sha256(data).hexdigest())
    backup.refresh_from_db()
    # Restore over the source's own copy in the target: first a good restore...
    good = services.restore_request(
        backup=run(source_database),
        target=second_database,
        actor=superuser,
        reason="baseline",
        confirmation=second_database.name,
    )
    services.restore_run(restore_id=good.pk)
    before = table_contents_digest(second_database.dbname)

    bad = services.restore_request(
        backup=backup,
        target=second_database,
        actor=superuser,
        reason="corrupt",
        confirmation=second_database.name,
    )
    services.restore_run(restore_id=bad.pk)
    bad.refresh_from_db()

    assert bad.status == RestoreStatus.FAILED
    assert "pg_restore failed" in bad.message
    assert table_contents_digest(second_database.dbname) == before
    assert query(second_database.dbname, "SELECT count(*) FROM precious") == [(7,)]


def test_restore_refuses_while_sessions_are_connected_unless_asked_to_disconnect(
    source_database, second_database, superuser
):
    backup = run(source_database)
    dsn = admin_dsn().rsplit("/", 1)[0] + "/" + second_database.dbname
    with psycopg.connect(dsn + "?application_name=reporting-app", autocommit=True) as other:
        refused = services.restore_request(
            backup=backup,
            target=second_database,
            actor=superuser,
            reason="refresh",
            confirmation=second_database.name,
        )
        services.restore_run(restore_id=refused.pk)
        refused.refresh_from_db()
        assert refused.status == RestoreStatus.FAILED
        assert "1 other session(s) are connected" in refused.message
        assert "reporting-app" in refused.message
        assert refused.safety_backup is None

        forced = services.restore_request(
            backup=backup,
            target=second_database,
            actor=superuser,
            reason="refresh",
            confirmation=second_database.name,
            disconnect_sessions=True,
        )
        services.restore_run(restore_id=forced.pk)
        forced.refresh_from_db()
        assert forced.status == RestoreStatus.SUCCEEDED, forced.message
        assert "1 session(s) disconnected" in forced.message
        with pytest.raises(psycopg.OperationalError):
            other.execute("SELECT 1")


def test_failed_safety_backup_means_the_restore_does_not_start(
    source_database, second_database, superuser
):
    query(second_database.dbname, "CREATE TABLE precious (id int)")
    backup = run(source_database)
    with small_filesystem("64k") as mountpoint:
        plan = services.backup_plan_ensure(database=second_database)
        plan.storage_location = mountpoint
        services.backup_plan_save(plan=plan)
        query(second_database.dbname, "INSERT INTO precious SELECT generate_series(1, 50000)")

        restore = services.restore_request(
            backup=backup,
            target=second_database,
            actor=superuser,
            reason="refresh",
            confirmation=second_database.name,
        )
        services.restore_run(restore_id=restore.pk)
        restore.refresh_from_db()

    assert restore.status == RestoreStatus.FAILED
    assert "safety backup" in restore.message and "did not start" in restore.message
    assert restore.safety_backup.status == BackupStatus.FAILED
    assert query(second_database.dbname, "SELECT count(*) FROM precious") == [(50000,)]
    assert query(
        second_database.dbname, "SELECT to_regclass('public.pgbench_accounts') IS NULL"
    ) == [(True,)]


def test_two_runs_for_one_database_never_overlap(source_database):
    first = services.backup_request(database=source_database)
    second = services.backup_request(database=source_database)
    assert services.backup_claim(backup_id=first.pk) is not None

    with pytest.raises(services.BackupBusy):
        services.backup_claim(backup_id=second.pk)
    assert run_backup.apply(args=[second.pk]).get() == "busy"
    second.refresh_from_db()
    assert second.status == BackupStatus.QUEUED


def test_typed_confirmation_and_reason_are_required(source_database, second_database, superuser):
    from django.core.exceptions import ValidationError

    backup = run(source_database)
    with pytest.raises(ValidationError, match="Type the name of the system you restore into"):
        services.restore_request(
            backup=backup, target=second_database, actor=superuser, reason="x", confirmation="yes"
        )
    with pytest.raises(ValidationError, match="reason"):
        services.restore_request(
            backup=backup,
            target=second_database,
            actor=superuser,
            reason=" ",
            confirmation=second_database.name,
        )
