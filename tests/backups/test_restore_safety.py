"""The restore's own safeguards, with the real pg_dump/pg_restore: the form never proposes the
source database as the target, and the safety backup taken first is verified like any
other backup before the target is overwritten."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from backups import services
from backups.models import Backup, BackupStatus, BackupTrigger, RestoreStatus, Verification
from opsportal.audit.models import AuditRecord
from opsportal.defaults import load_defaults
from tests.backups.conftest import query, second_dba_approves, table_contents_digest


@pytest.fixture
def dba(db):
    load_defaults()
    user = get_user_model().objects.create_user("dora-dba", password="dba-pass-123", is_staff=True)
    user.groups.add(Group.objects.get(name="Database admins"))
    return user


def target_options(html: str) -> list[tuple[str, bool]]:
    select = re.search(r'<select name="target"[^>]*>(.*?)</select>', html, re.S)
    assert select, "the restore form has no target list"
    return [
        (value, "selected" in attributes)
        for attributes, value in (
            (m.group(0), m.group(1))
            for m in re.finditer(r'<option value="([^"]*)"[^>]*>', select.group(1))
        )
    ]


def test_the_restore_form_does_not_pre_select_the_source_database(
    client, dba, source_database, second_database
):
    backup = services.backup_run_now(database=source_database, reason="before the change")
    assert backup.status == BackupStatus.SUCCEEDED, backup.message
    client.force_login(dba)
    page = client.get(f"/admin/backups/backup/{backup.pk}/restore/")
    assert page.status_code == 200
    options = target_options(page.content.decode())
    assert {value for value, _ in options} >= {str(source_database.pk), str(second_database.pk)}
    # Nothing is chosen for the operator: the empty choice is the one shown.
    assert [value for value, selected in options if selected] in ([], [""])
    assert (str(source_database.pk), True) not in options

    # Submitting without choosing says so, and nothing is restored.
    refused = client.post(
        f"/admin/backups/backup/{backup.pk}/restore/",
        {"confirmation": source_database.name, "reason": "oops"},
    )
    assert refused.status_code == 200 and "This field is required" in refused.content.decode()
    assert not backup.restores.exists()


def test_the_safety_backup_is_verified_before_the_target_is_overwritten(
    source_database, second_database, dba
):
    query(second_database.dbname, "CREATE TABLE precious AS SELECT generate_series(1, 500) id")
    backup = services.backup_run_now(database=source_database, reason="for the restore")
    restore = services.restore_request(
        backup=backup,
        target=second_database,
        actor=dba,
        reason="refresh the copy",
        confirmation=second_database.name,
        dispatch=False,
    )
    second_dba_approves(restore)
    services.restore_run(restore_id=restore.pk)
    restore.refresh_from_db()
    assert restore.status == RestoreStatus.SUCCEEDED, restore.message
    assert table_contents_digest(second_database.dbname) == table_contents_digest(
        source_database.dbname
    )

    safety = Backup.objects.get(pk=restore.safety_backup_id)
    assert safety.trigger == BackupTrigger.SAFETY and safety.status == BackupStatus.SUCCEEDED
    # Verified like every backup: the checksum re-read and pg_restore read every block.
    assert safety.verification == Verification.VERIFIED, safety.verification_message
    assert "Checksum matches" in safety.verification_message
    assert "every data block read" in safety.verification_message
    assert AuditRecord.objects.filter(
        object_type="backups.backup",
        object_id=str(safety.pk),
        message__startswith="Verification: Checksum matches",
    ).exists()
    # And it really holds the target as it was: the table the restore replaced.
    assert safety.table_row_counts.get("public.precious") == 500
