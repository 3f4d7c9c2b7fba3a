"""Two-person approval of restores (issue 14), with the real pg_dump/pg_restore: on by
default, a DBA's restore waits (not dispatched, the sweeper leaves it alone) until another
DBA approves it, then runs; a rejected one never runs."""

from __future__ import annotations

import datetime as dt

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.utils import timezone

from backups import services
from backups.models import RestoreStatus
from opsportal.approvals.models import ApprovalStatus
from opsportal.approvals.services import ApprovalRefused, approval_decide, approval_for
from opsportal.defaults import load_defaults
from opsportal.people.models import Notification
from tests.backups.conftest import table_contents_digest
from tests.workers import clear_queue, queued_tasks


@pytest.fixture
def dbas(db):
    load_defaults()
    users = []
    for name in ("dora", "dirk"):
        user = get_user_model().objects.create_user(
            name, f"{name}@example.com", "dba-pass-123", is_staff=True
        )
        user.groups.add(Group.objects.get(name="Database admins"))
        users.append(user)
    return users


def test_a_restore_waits_for_a_second_dba_then_runs(
    dbas, source_database, second_database, django_capture_on_commit_callbacks
):
    dora, dirk = dbas
    backup = services.backup_run_now(database=source_database, reason="for the restore")
    clear_queue(settings.CELERY_BROKER_URL)
    with django_capture_on_commit_callbacks(execute=True):
        restore = services.restore_request(
            backup=backup,
            target=second_database,
            actor=dora,
            reason="refresh the copy",
            confirmation=second_database.name,
        )
    assert restore.status == RestoreStatus.AWAITING
    # Only the approvers' notifications were dispatched; no restore task.
    names = {name for name, _ in queued_tasks(settings.CELERY_BROKER_URL)}
    assert "backups.restore" not in names and "people.deliver_notification" in names, names
    approval = approval_for(restore)
    assert approval.scope == "restores" and "into orders-db-copy" in approval.summary
    assert Notification.objects.filter(recipient="dirk@example.com").exists()
    assert not Notification.objects.filter(recipient="dora@example.com").exists()
    # The backups sweeper neither dispatches nor fails a waiting restore.
    with django_capture_on_commit_callbacks(execute=True):
        services.backups_sweep(now=timezone.now() + dt.timedelta(minutes=20))
    assert "backups.restore" not in {n for n, _ in queued_tasks(settings.CELERY_BROKER_URL)}
    restore.refresh_from_db()
    assert restore.status == RestoreStatus.AWAITING
    assert services.restore_run(restore_id=restore.pk) is None  # a worker cannot claim it

    with pytest.raises(ApprovalRefused, match="second person"):
        approval_decide(approval=approval, actor=dora, approve=True, reason="mine")
    with django_capture_on_commit_callbacks(execute=True):
        approval_decide(approval=approval, actor=dirk, approve=True, reason="checked the backup")
    restore.refresh_from_db()
    assert restore.status == RestoreStatus.QUEUED
    assert ("backups.restore", restore.pk) in queued_tasks(settings.CELERY_BROKER_URL)
    clear_queue(settings.CELERY_BROKER_URL)
    services.restore_run(restore_id=restore.pk)
    restore.refresh_from_db()
    assert restore.status == RestoreStatus.SUCCEEDED, restore.message
    assert table_contents_digest(second_database.dbname) == table_contents_digest(
        source_database.dbname
    )


def test_a_rejected_restore_never_runs(dbas, source_database, second_database):
    dora, dirk = dbas
    backup = services.backup_run_now(database=source_database, reason="for the restore")
    restore = services.restore_request(
        backup=backup,
        target=second_database,
        actor=dora,
        reason="refresh the copy",
        confirmation=second_database.name,
    )
    approval_decide(
        approval=approval_for(restore), actor=dirk, approve=False, reason="wrong backup"
    )
    restore.refresh_from_db()
    assert restore.status == RestoreStatus.NOT_APPROVED
    assert "Rejected by dirk: wrong backup" in restore.message
    assert services.restore_run(restore_id=restore.pk) is None
    assert approval_for(restore).status == ApprovalStatus.REJECTED
