"""What several of the backup services share: the time limits, the permission check, the
row-first claim of restores and drills, creating and dispatching a backup row, reading an
archive back (gunzip, hashing, checksum) and dispatching the configuration commit."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import zlib
from collections.abc import Iterable, Iterator

from django.core.exceptions import ValidationError
from django.utils import timezone

from backups.models import Backup, BackupFormat, BackupMethod, BackupPlan, RestoreStatus
from backups.storage import storage_for
from opsportal.actors import acting_user, actor_require
from opsportal.jobs import job_claim
from opsportal.queueing import enqueue_after_commit
from opsportal.systems.models import PostgresDatabase

# One logger for all of the app's services, named as before they were split into modules,
# so log lines and any logging configuration for "backups.services" stay the same.
logger = logging.getLogger("backups.services")


OPERATION_TIME_LIMIT = dt.timedelta(hours=3)
DEFAULT_TIME_LIMIT_SECONDS = 3 * 3600


def _require(actor: object | None, permission: str) -> None:
    actor_require(actor, permission)


def _claim(model, pk: int) -> bool:
    """Claim a queued restore or drill for this worker (False if someone else has it)."""
    return job_claim(
        model,
        pk,
        from_status=RestoreStatus.QUEUED,
        to_status=RestoreStatus.RUNNING,
        started_at=timezone.now(),
    )


def _backup_create(
    *,
    database: PostgresDatabase,
    actor: object | None,
    reason: str,
    trigger: str,
    retry_of: Backup | None = None,
) -> Backup:
    plan = BackupPlan.objects.filter(database=database).first()
    return Backup.objects.create(
        database=database,
        plan=plan,
        trigger=trigger,
        retry_of=retry_of,
        reason=reason[:500],
        requested_by=acting_user(actor),
        method=plan.method if plan else BackupMethod.NETWORK,
        format=plan.format if plan else BackupFormat.CUSTOM,
        compression=plan.compression if plan else 6,
        storage_location=plan.storage_location if plan else "",
    )


def _dispatch_backup(backup: Backup, **options: object) -> None:
    from backups.tasks import run_backup

    limit = backup.plan.time_limit_seconds if backup.plan else DEFAULT_TIME_LIMIT_SECONDS
    enqueue_after_commit(
        run_backup, backup.pk, time_limit=limit + 120, soft_time_limit=limit + 60, **options
    )


def _gunzip(chunks: Iterable[bytes]) -> Iterator[bytes]:
    decompressor = zlib.decompressobj(wbits=31)
    for chunk in chunks:
        data = decompressor.decompress(chunk)
        if data:
            yield data
    tail = decompressor.flush()
    if tail:
        yield tail


def _archive_chunks(backup: Backup, chunks: Iterable[bytes]) -> Iterable[bytes]:
    """The bytes pg_restore/psql read: plain dumps written compressed are gzip."""
    if backup.format == BackupFormat.PLAIN and backup.compression:
        return _gunzip(chunks)
    return chunks


class _Hashing:
    def __init__(self, chunks: Iterable[bytes]) -> None:
        self.chunks = iter(chunks)
        self.hasher = hashlib.sha256()
        self.size = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.chunks:
            self.hasher.update(chunk)
            self.size += len(chunk)
            yield chunk

    def drain(self) -> None:
        for _ in self:
            pass


def _file_matches_checksum(backup: Backup) -> None:
    hashing = _Hashing(storage_for(backup.storage_location).read_chunks(backup.file_name))
    hashing.drain()
    if hashing.hasher.hexdigest() != backup.sha256:
        raise ValidationError(
            f"Checksum mismatch: backup #{backup.pk}'s file changed after it was written "
            f"(recorded sha256 {backup.sha256}, found {hashing.hasher.hexdigest()}); "
            "nothing was restored."
        )


def _dispatch_configuration_commit(*, countdown: float) -> None:
    from backups.tasks import commit_configuration_changes

    if countdown > 0 and commit_configuration_changes.app.conf.task_always_eager:
        # Tasks run inline (CELERY_TASK_ALWAYS_EAGER) cannot wait for the burst to end, and
        # re-sending at once would recurse: leave the burst to the sweeper.
        return
    enqueue_after_commit(commit_configuration_changes, countdown=max(countdown, 0))
