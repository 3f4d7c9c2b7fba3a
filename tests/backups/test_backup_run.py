"""Backups of a real pgbench database with the real pg_dump, round-tripped through restore."""

import hashlib
import stat

import pytest

from backups import services
from backups.models import Backup, BackupStatus, RestoreStatus, Verification
from backups.storage import storage_for
from backups.tasks import run_backup, run_restore
from opsportal.audit.models import AuditRecord
from tests.backups.conftest import table_contents_digest


def run(database, **kwargs) -> Backup:
    backup = services.backup_request(database=database, **kwargs)
    assert backup.status == BackupStatus.QUEUED
    run_backup.apply(args=[backup.pk])
    backup.refresh_from_db()
    return backup


def test_backup_streams_to_storage_with_checksum_and_row_counts(source_database, backup_root):
    backup = run(source_database, reason="before the upgrade")

    assert backup.status == BackupStatus.SUCCEEDED, backup.message
    path = backup_root / backup.file_name
    data = path.read_bytes()
    assert backup.size_bytes == len(data) > 0
    assert backup.sha256 == hashlib.sha256(data).hexdigest()
    assert data.startswith(b"PGDMP")  # custom format
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert backup.server_version.startswith("15")
    assert backup.table_row_counts["public.pgbench_accounts"] == 100_000
    assert backup.table_row_counts["public.pgbench_history"] == 250
    assert backup.table_row_counts["audit_trail.Odd Name"] == 42
    assert backup.started_at and backup.finished_at and backup.duration_seconds > 0
    assert backup.verification == Verification.VERIFIED, backup.verification_message
    assert "Checksum matches" in backup.verification_message
    # No partial file is left next to the backup.
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    messages = list(
        AuditRecord.objects.filter(object_type="backups.backup", object_id=str(backup.pk))
        .order_by("id")
        .values_list("outcome", "message")
    )
    assert messages[0][0] == "requested" and "before the upgrade" in messages[0][1]
    assert any(o == "success" and backup.sha256 in m for o, m in messages)


def test_backup_then_restore_into_another_database_gives_identical_contents(
    source_database, second_database, superuser
):
    backup = run(source_database)
    assert backup.status == BackupStatus.SUCCEEDED, backup.message

    restore = services.restore_request(
        backup=backup,
        target=second_database,
        actor=superuser,
        reason="copy for reporting",
        confirmation=second_database.name,
    )
    run_restore.apply(args=[restore.pk])
    restore.refresh_from_db()

    assert restore.status == RestoreStatus.SUCCEEDED, restore.message
    assert table_contents_digest(second_database.dbname) == table_contents_digest(
        source_database.dbname
    )
    # The safety backup of the (empty) target was taken first.
    assert restore.safety_backup.status == BackupStatus.SUCCEEDED
    assert restore.safety_backup.trigger == "safety"


@pytest.mark.parametrize("compression", [0, 6])
def test_plain_sql_backup_round_trips(source_database, second_database, superuser, compression):
    plan = services.backup_plan_ensure(database=source_database)
    plan.format, plan.compression = "plain", compression
    services.backup_plan_save(plan=plan)

    backup = run(source_database)
    assert backup.status == BackupStatus.SUCCEEDED, backup.message
    assert backup.file_name.endswith(".sql.gz" if compression else ".sql")
    assert backup.verification == Verification.VERIFIED, backup.verification_message

    restore = services.restore_request(
        backup=backup,
        target=second_database,
        actor=superuser,
        reason="plain copy",
        confirmation=second_database.name,
    )
    services.restore_run(restore_id=restore.pk)
    restore.refresh_from_db()
    assert restore.status == RestoreStatus.SUCCEEDED, restore.message
    assert table_contents_digest(second_database.dbname) == table_contents_digest(
        source_database.dbname
    )


def test_drill_restores_into_scratch_database_and_compares_counts(source_database):
    backup = run(source_database)
    drill = services.drill_request(backup=backup)
    services.drill_run(drill_id=drill.pk)
    drill.refresh_from_db()
    backup.refresh_from_db()

    assert drill.status == RestoreStatus.SUCCEEDED, drill.message
    assert drill.tables_compared == len(backup.table_row_counts) >= 5
    assert drill.mismatches == {}
    assert backup.drill_result == "passed"
    from tests.backups.conftest import query

    leftover = query(
        "postgres",
        "SELECT datname FROM pg_database WHERE datname = %s",
        [drill.scratch_database],
    )
    assert leftover == []
    assert storage_for("").exists(backup.file_name)


@pytest.fixture
def dba_team(db):
    from opsportal.people.models import Responsibility, Team

    return Team.objects.create(
        name="DBA", responsibility=Responsibility.DATABASE, email="dba@example.com"
    )


def _scratch_databases() -> list:
    from tests.backups.conftest import query

    return query(
        "postgres", "SELECT datname FROM pg_database WHERE datname LIKE 'opsportal_drill_%%'"
    )


def test_a_drill_whose_row_counts_differ_fails_flags_the_backup_and_pages_the_dbas(
    source_database, dba_team
):
    from opsportal.people.models import Notification

    backup = run(source_database)
    before = _scratch_databases()
    # The source recorded more rows than the dump holds: what a silently truncated dump
    # would look like when restored.
    counts = dict(backup.table_row_counts)
    table = next(name for name in counts if name.endswith("pgbench_branches"))
    counts[table] += 1
    Backup.objects.filter(pk=backup.pk).update(table_row_counts=counts)
    backup.refresh_from_db()

    drill = services.drill_request(backup=backup)
    services.drill_run(drill_id=drill.pk)
    drill.refresh_from_db()
    backup.refresh_from_db()

    assert drill.status == RestoreStatus.FAILED
    assert drill.mismatches == {table: {"recorded": counts[table], "restored": counts[table] - 1}}
    assert "1 of" in drill.message and "differ in row count" in drill.message
    assert backup.drill_result == "failed"
    [page] = Notification.objects.filter(subject__contains="failed its restore drill")
    assert page.recipient == "dba@example.com"
    assert _scratch_databases() == before  # the scratch database was dropped all the same


def test_a_drill_of_a_tampered_file_fails_before_restoring(source_database, dba_team):
    backup = run(source_database)
    path = storage_for(backup.storage_location).path(backup.file_name)
    with open(path, "r+b") as handle:
        handle.seek(100)
        handle.write(b"\0" * 16)
    drill = services.drill_request(backup=backup)
    services.drill_run(drill_id=drill.pk)
    drill.refresh_from_db()
    assert drill.status == RestoreStatus.FAILED
    assert "checksum" in drill.message.lower()
    assert Backup.objects.get(pk=backup.pk).drill_result == "failed"


def test_a_request_whose_audit_record_fails_leaves_nothing_queued(
    source_database, monkeypatch, django_capture_on_commit_callbacks
):
    """The queued row, its audit record and the task's dispatch go together: a request that
    cannot be audited queues no backup a worker would then run unrecorded."""
    from backups.services import runs

    def audit_unavailable(**kwargs):
        raise RuntimeError("audit chain unavailable")

    monkeypatch.setattr(runs, "audit_record", audit_unavailable)
    before = Backup.objects.count()
    with (
        django_capture_on_commit_callbacks() as dispatched,
        pytest.raises(RuntimeError, match="audit chain unavailable"),
    ):
        services.backup_request(database=source_database, reason="before the upgrade")
    assert Backup.objects.count() == before
    assert dispatched == []
