"""The restore page shows, read live before the person confirms, the size and age of the
backup and the target's current size; the restore says what changed on the target since;
an unreachable target fails the preview with its reason (issue 14)."""

import html

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from backups import services
from backups.models import Restore, RestoreStatus
from opsportal.approvals.services import approval_decide, approval_for
from opsportal.defaults import load_defaults
from opsportal.systems.models import PostgresDatabase
from tests.backups.conftest import query
from tests.previewing import preview_token_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def dba_client(client):
    load_defaults()
    dba = get_user_model().objects.create_user("dora-dba", password="dba-pass-123", is_staff=True)
    dba.groups.add(Group.objects.get(name="Database admins"))
    client.force_login(dba)
    return client


def test_the_restore_page_previews_backup_and_target_and_the_restore_says_what_changed(
    dba_client, source_database, second_database
):
    query(second_database.dbname, "CREATE TABLE precious AS SELECT generate_series(1, 5000) id")
    backup = services.backup_run_now(database=source_database, reason="for the restore test")
    url = f"/admin/backups/backup/{backup.pk}/restore/"
    form = {
        "target": second_database.pk,
        "reason": "refresh the reporting copy",
        "confirmation": second_database.name,
    }
    shown = dba_client.post(url, form)
    assert shown.status_code == 200 and not Restore.objects.exists()
    preview = shown.context["preview"]
    assert preview["backup_size_bytes"] == backup.size_bytes > 0
    assert 0 <= preview["backup_age_seconds"] < 600
    size_now = int(
        query(second_database.dbname, "SELECT pg_database_size(current_database())")[0][0]
    )
    assert preview["target_size_bytes"] == size_now
    assert preview["target_tables"] == 1
    text = html.unescape(shown.content.decode())
    assert "This is what the restore replaces now: check it and confirm again." in text
    assert "orders-db-copy now: " in text and f"({size_now} bytes), 1 tables" in text
    assert f"Backup #{backup.pk} of orders-db:" in text

    # The target grows between the preview and the restore: the restore says so.
    query(second_database.dbname, "CREATE TABLE late AS SELECT generate_series(1, 5000) id")
    confirmed = dba_client.post(url, {**form, "preview_token": preview_token_of(shown)})
    assert confirmed.status_code == 302, confirmed.content.decode()[:2000]
    restore = Restore.objects.get()
    assert restore.preview["target_size_bytes"] == size_now
    # Restores wait for a second DBA by default (two-person approval).
    assert restore.status == RestoreStatus.AWAITING
    second = get_user_model().objects.create_user("dan-dba", password="dba-pass-456", is_staff=True)
    second.groups.add(Group.objects.get(name="Database admins"))
    approval_decide(
        approval=approval_for(restore), actor=second, approve=True, reason="copy refresh, ok"
    )
    services.restore_run(restore_id=restore.pk)
    restore.refresh_from_db()
    assert restore.status == RestoreStatus.SUCCEEDED, restore.message
    first_line = restore.message.splitlines()[0]
    assert first_line.startswith(
        f"Against the preview: the target's size (bytes) {size_now} at the preview, "
    )
    assert "tables 1 at the preview, 2 just before restoring" in first_line


def test_an_unreachable_target_fails_the_restore_preview_with_its_reason(
    dba_client, source_database
):
    closed = PostgresDatabase.objects.create(
        name="gone-db", host="127.0.0.1", port=1, dbname="app", username="app"
    )
    backup = services.backup_run_now(database=source_database, reason="for the restore test")
    url = f"/admin/backups/backup/{backup.pk}/restore/"
    form = {"target": closed.pk, "reason": "rebuild it", "confirmation": "gone-db"}
    shown = dba_client.post(url, form)
    text = html.unescape(shown.content.decode())
    assert 'id="preview-failed"' in text
    assert (
        "The preview of gone-db failed: PostgreSQL gone-db (127.0.0.1:1/app) is not reachable"
        in (text)
    )
    assert shown.context["preview"]["backup_size_bytes"] == backup.size_bytes
    assert not Restore.objects.exists()
    # Still possible, with the reason the form asks for anyway.
    ran = dba_client.post(url, {**form, "preview_token": preview_token_of(shown)})
    assert ran.status_code == 302
    assert "not reachable" in Restore.objects.get().preview["failed"]
