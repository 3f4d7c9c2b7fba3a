"""The columns every row-first job shares (CONVENTIONS.md, "Background operations"), as an
abstract model: status, when it was requested, started and finished, which worker claimed
it and when that worker last beat, how often it was dispatched, and what went wrong.

A job model inherits `JobFields` and keeps only its own states and columns. It overrides a
shared column whose definition differs (its own status choices, an index it always had)
and drops, with `= None`, a shared column it has never had, so no table changes:
`manage.py makemigrations --check` finds nothing to do.

Who uses it, and who does not:

- `operations.Operation`: started/finished times, dispatch count, error (its status
  choices and its un-indexed `requested_at` are its own; no worker or heartbeat).
- `backups.Backup`: started time, worker, heartbeat (its status, and its indexed
  `requested_at`/`finished_at`, are its own; its "what went wrong" is `message`).
- `backups.Restore` and `backups.RestoreDrill`: requested/started/finished times (status
  and `message` are their own).
- Not `maintenance.ChecklistStep` (queued at `queued_at`, done at `completed_at`), not
  `maintenance.TaskOccurrence`'s security scan (`scan_status`, `scan_queued_at`,
  `scan_started_at`) and not `people.Notification` (`created_at`, `next_attempt_at`,
  `sent_at`, `last_error`): none of their columns has the shared name, and renaming a
  column is a schema change this model must not cause.

That is why the lifecycle functions (`opsportal.jobs.lifecycle`) take column names
(`status_field`, `queued_field`, `started_field`, …) rather than requiring this base: the
names default to the ones declared here, and the models above that differ say theirs.
"""

from django.db import models


class JobFields(models.Model):
    """The shared columns of a row-first job. Each concrete job declares its own `status`
    (its own choices and default); `max_length=16` is every job's."""

    status = models.CharField(max_length=16)
    requested_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Which worker (Celery hostname and pid) claimed the job, so a lost job names it.
    worker = models.CharField(max_length=255, blank=True)
    # Refreshed by the worker while it runs; a stale one means the worker died.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    dispatch_count = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True)

    class Meta:
        abstract = True
