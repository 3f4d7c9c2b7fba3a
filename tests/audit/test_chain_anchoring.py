"""The audit chain is keyed and anchored outside the database: a record rewritten with a
recomputed hash, the newest records cut off, or TRUNCATE are all caught or refused."""

import hashlib
import io
import json
import subprocess
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.db.utils import DatabaseError
from django_celery_beat.models import PeriodicTask

from backups import services as backup_services
from backups.audit_checkpoints import CHECKPOINT_FILE
from opsportal.audit import chain
from opsportal.audit.checkpoints import Checkpoint
from opsportal.audit.models import AuditRecord
from opsportal.audit.services import audit_checkpoint_write, audit_record, audit_verify_chain
from opsportal.audit.tasks import write_checkpoint
from opsportal.defaults import load_defaults
from opsportal.people.models import Team

pytestmark = pytest.mark.django_db

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.fixture
def repo(settings, tmp_path) -> Path:
    settings.CONFIG_BACKUP_REPO = tmp_path / "config-repo"
    settings.CONFIG_BACKUP_REMOTE = ""
    return settings.CONFIG_BACKUP_REPO


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def some_history(n: int = 6) -> list[AuditRecord]:
    return [
        audit_record(action="operation", object_repr=f"step {i}", message=f"did step {i}")
        for i in range(n)
    ]


def verify() -> str:
    out = io.StringIO()
    call_command("verify_audit", stdout=out)
    return out.getvalue()


def raw(sql: str, params: list) -> None:
    """What someone with direct database access can do: switch the guard off and write."""
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditrecord DISABLE TRIGGER audit_record_append_only")
        cursor.execute(sql, params)
        cursor.execute("ALTER TABLE audit_auditrecord ENABLE TRIGGER audit_record_append_only")


def unkeyed_rechain_from(record_id: int) -> None:
    """Recompute every hash from `record_id` on as the chain was before it was keyed: what
    a forger without AUDIT_HMAC_KEY can do after editing a record."""
    prev = (
        AuditRecord.objects.filter(id__lt=record_id).order_by("-id").values_list("hash", flat=True)
    ).first() or chain.GENESIS_HASH
    for record in AuditRecord.objects.filter(id__gte=record_id).order_by("id"):
        record.prev_hash = prev
        digest = chain.unkeyed_digest(record)
        raw(
            "UPDATE audit_auditrecord SET prev_hash = %s, hash = %s WHERE id = %s",
            [prev, digest, record.pk],
        )
        prev = digest


def test_a_rewritten_record_is_named_even_with_its_hashes_recomputed(repo):
    history = some_history()
    victim = history[2]
    raw(
        "UPDATE audit_auditrecord SET message = %s WHERE id = %s",
        ["nothing happened here", victim.pk],
    )
    with pytest.raises(CommandError, match=f"broken at record {victim.pk}: its contents"):
        verify()

    # Recomputing the hashes does not help without the key.
    unkeyed_rechain_from(victim.pk)
    _, chain_break = audit_verify_chain()
    assert chain_break is not None and chain_break.record_id == victim.pk
    assert "contents do not match" in chain_break.reason


def test_removing_the_newest_records_is_reported_as_truncation(repo):
    history = some_history()
    checkpoint, where = audit_checkpoint_write()
    assert where.startswith("commit ")
    assert checkpoint.last_id == history[-1].pk
    assert "Matches the checkpoint" in verify()

    removed = [r.pk for r in history[-3:]]
    raw("DELETE FROM audit_auditrecord WHERE id = ANY(%s)", [removed])
    _, chain_break = audit_verify_chain()
    assert chain_break is None  # what is left is a valid chain: only the checkpoint tells
    with pytest.raises(CommandError, match="truncated") as failure:
        verify()
    message = str(failure.value)
    assert f"records #{removed[0]} to #{removed[-1]} are missing" in message
    assert f"{checkpoint.count} records" in message


def test_a_rewritten_newest_record_differs_from_the_checkpoint(repo):
    history = some_history(3)
    audit_checkpoint_write()
    newest = history[-1]
    raw("UPDATE audit_auditrecord SET message = %s WHERE id = %s", ["edited", newest.pk])
    with pytest.raises(CommandError, match=f"broken at record {newest.pk}"):
        verify()


def test_a_forged_checkpoint_is_refused(repo, tmp_path):
    some_history(3)
    checkpoint, _ = audit_checkpoint_write()
    forged = json.loads((repo / CHECKPOINT_FILE).read_text())
    forged["count"] = 1
    path = tmp_path / "forged.json"
    path.write_text(json.dumps(forged))
    with pytest.raises(CommandError, match="wrong signature"):
        call_command("verify_audit", checkpoint=path)
    # The genuine file, e.g. from a clone of the repository's remote, is accepted.
    genuine = tmp_path / "genuine.json"
    genuine.write_text(checkpoint.to_json())
    out = io.StringIO()
    call_command("verify_audit", checkpoint=genuine, stdout=out)
    assert "Matches the checkpoint" in out.getvalue()


def test_database_refuses_truncate_of_the_audit_table(repo):
    some_history(2)
    with (
        pytest.raises(DatabaseError, match=r"append-only \(TRUNCATE refused\)"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("TRUNCATE audit_auditrecord")
    assert AuditRecord.objects.count() >= 2


def test_each_configuration_commit_carries_a_checkpoint(repo, superuser):
    Team.objects.create(name="DBA", responsibility="database", email="dba@example.com")
    newest = AuditRecord.objects.order_by("-id").first()
    result = backup_services.configuration_backup(actor=superuser)
    assert result.committed
    committed = git(repo, "show", "--name-only", "--format=", "HEAD").splitlines()
    assert CHECKPOINT_FILE in committed and "people/team.json" in committed
    checkpoint = Checkpoint.from_json(git(repo, "show", f"HEAD:{CHECKPOINT_FILE}"))
    assert checkpoint.signature_valid()
    assert checkpoint.last_id == newest.pk
    assert "Matches the checkpoint" in verify()


def test_an_hourly_schedule_writes_checkpoints_and_skips_when_nothing_changed(repo):
    load_defaults()
    entry = PeriodicTask.objects.get(name="Audit checkpoint")
    assert entry.task == "audit.write_checkpoint"
    assert (entry.crontab.minute, entry.crontab.hour) == ("50", "*")

    some_history(2)
    assert ": commit " in write_checkpoint.apply().get()
    commits = git(repo, "log", "--format=%s").splitlines()
    assert commits[0].startswith("Audit checkpoint:")
    assert write_checkpoint.apply().get().endswith("unchanged")
    assert git(repo, "log", "--format=%s").splitlines() == commits
    audit_record(action="operation", object_repr="one more")
    write_checkpoint.apply()
    assert len(git(repo, "log", "--format=%s").splitlines()) == len(commits) + 1


def test_the_migration_rechains_records_written_before_the_key(repo):
    history = some_history(4)
    # Records as the portal wrote them before the chain was keyed.
    unkeyed_rechain_from(history[0].pk)
    assert audit_verify_chain()[1] is not None

    executor = MigrationExecutor(connection)
    before = executor.loader.project_state([("audit", "0003_refuse_truncate")]).apps
    migration = executor.loader.get_migration("audit", "0004_key_the_chain_with_hmac")
    rechain = migration.operations[0].code
    with connection.schema_editor() as schema_editor:
        rechain(before, schema_editor)

    checked, chain_break = audit_verify_chain()
    assert chain_break is None and checked == len(history) + 1
    note = AuditRecord.objects.order_by("-id").first()
    assert note.message.startswith("Audit chain keyed with AUDIT_HMAC_KEY: 4 earlier records")
    assert "verified intact before re-keying" in note.message


def test_the_migration_notes_an_old_chain_that_was_already_broken(repo):
    history = some_history(3)
    unkeyed_rechain_from(history[0].pk)
    raw("UPDATE audit_auditrecord SET message = 'edited' WHERE id = %s", [history[1].pk])
    executor = MigrationExecutor(connection)
    before = executor.loader.project_state([("audit", "0003_refuse_truncate")]).apps
    rechain = executor.loader.get_migration("audit", "0004_key_the_chain_with_hmac")
    with connection.schema_editor() as schema_editor:
        rechain.operations[0].code(before, schema_editor)
    note = AuditRecord.objects.order_by("-id").first()
    assert f"already broken at record #{history[1].pk}" in note.message
    assert note.outcome == "failure"


def test_the_hash_is_keyed():
    record = audit_record(action="operation", object_repr="x")
    plain = hashlib.sha256(chain._canonical(record)).hexdigest()
    assert record.hash != plain
    assert record.hash == chain.record_digest(record)


def test_the_audit_layer_does_not_import_the_backups_app():
    for path in (PROJECT_ROOT / "opsportal" / "audit").rglob("*.py"):
        text = path.read_text()
        assert "import backups" not in text and "from backups" not in text, path


def test_a_role_that_does_not_own_the_audit_table_can_append_but_not_rewrite(db):
    """The README's production recipe: migrate as the owner, run the portal as a role with
    INSERT and SELECT only on the audit table. That role cannot switch the guard off."""
    role = "opsportal_app_test_role"
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE ROLE {role} NOLOGIN")
        cursor.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
        cursor.execute(
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}"
        )
        cursor.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}")
        cursor.execute(f"REVOKE UPDATE, DELETE, TRUNCATE ON audit_auditrecord FROM {role}")
        cursor.execute(f"SET LOCAL ROLE {role}")
    try:
        record = audit_record(action="operation", object_repr="written by the portal's role")
        for sql in (
            "ALTER TABLE audit_auditrecord DISABLE TRIGGER audit_record_append_only",
            "ALTER TABLE audit_auditrecord DISABLE TRIGGER ALL",
            "UPDATE audit_auditrecord SET message = 'x' WHERE id = %s",
            "DELETE FROM audit_auditrecord WHERE id = %s",
            "TRUNCATE audit_auditrecord",
        ):
            with (
                pytest.raises(DatabaseError, match=r"must be owner|permission denied"),
                transaction.atomic(),
                connection.cursor() as cursor,
            ):
                cursor.execute(sql, [record.pk] if "%s" in sql else None)
        assert AuditRecord.objects.filter(pk=record.pk).exists()
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET ROLE")
