"""The backups sweeper on restores and drills (now through the shared opsportal.jobs
sweep): a queued one the broker lost is sent again, a running one past the time limit is
failed with the same message as before."""

import datetime as dt

from django.utils import timezone

from backups import services
from backups.models import BackupStatus, Restore, RestoreDrill, RestoreStatus
from backups.services._common import OPERATION_TIME_LIMIT, _claim

PAST_LIMIT = "The worker stopped before finishing (past the time limit)."


def test_restores_and_drills_lost_or_left_running_are_swept(source_database, second_database):
    backup = services.backup_run_now(database=source_database, actor=None, reason="sweep test")
    assert backup.status == BackupStatus.SUCCEEDED, backup.message
    drill = services.drill_request(backup=backup)
    restore = services.restore_request(
        backup=backup,
        target=second_database,
        actor=None,
        reason="sweep test",
        confirmation=second_database.name,
    )
    baseline = services.backups_sweep()["redispatched"]  # not lost yet
    lost = services.backups_sweep(now=timezone.now() + dt.timedelta(seconds=61))
    # The drill and the restore are sent again; nothing is failed.
    assert lost["redispatched"] == baseline + 2
    assert lost["failed"] == 0

    # A worker claims both and dies: they stay running until the time limit has passed.
    assert _claim(RestoreDrill, drill.pk) and _claim(Restore, restore.pk)
    drill.refresh_from_db()
    limit = drill.started_at + OPERATION_TIME_LIMIT
    assert services.backups_sweep(now=limit - dt.timedelta(seconds=5))["failed"] == 0
    after = limit + dt.timedelta(seconds=5)
    assert services.backups_sweep(now=after)["failed"] == 2
    for row in (drill, restore):
        row.refresh_from_db()
        assert (row.status, row.message, row.finished_at) == (
            RestoreStatus.FAILED,
            PAST_LIMIT,
            after,
        )
    assert services.backups_sweep(now=after)["failed"] == 0
