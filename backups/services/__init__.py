"""Backups, verification, restores, drills and retention: every state change of the app.

One module per concept, re-exported here so callers keep `from backups import services` and
`from backups.services import X`:

- plans: a plan's schedule, the default plan of a registered database, the scheduled run
- runs: requesting, claiming and running a backup (dump, heartbeat, row counts)
- verification: re-reading a backup's file (checksum, readable end to end)
- restores: a confirmed restore behind a verified safety backup
- drills: restoring into a scratch database and comparing row counts
- retention: which backups a plan keeps, deleting the others' files
- sweeping: re-dispatching lost work, failing abandoned runs, reporting missed schedules
- configuration: configuration backups to Git, the audit checkpoint commit and documents
  filed in the same repository (post-incident review drafts)
- alerts: telling the database admins about a failure
- anomalies: a verified backup compared with the database's recent backups (suspicious ones
  raise an alert)
"""

from backups.services._common import (
    DEFAULT_TIME_LIMIT_SECONDS,
    OPERATION_TIME_LIMIT,
)
from backups.services.anomalies import (
    BackupFigures,
    backup_compare_with_history,
    backup_history_findings,
)
from backups.services.configuration import (
    CONFIG_DEBOUNCE,
    audit_checkpoint_commit,
    configuration_backup,
    configuration_change_record,
    configuration_commit_changes,
    configuration_document_file,
    configuration_restore,
)
from backups.services.drills import drill_request, drill_run, drills_request_newest
from backups.services.plans import (
    backup_plan_ensure,
    backup_plan_on_registration,
    backup_plan_run_scheduled,
    backup_plan_save,
    backups_load_defaults,
    plan_next_due,
    schedule_crontab,
)
from backups.services.restores import (
    restore_check,
    restore_preview,
    restore_request,
    restore_run,
    restore_run_now,
)
from backups.services.retention import (
    backup_plan_apply_retention,
    backups_beyond_retention,
    retention_keep,
)
from backups.services.runs import (
    HEARTBEAT_SECONDS,
    HEARTBEAT_STALE,
    BackupBusy,
    backup_claim,
    backup_request,
    backup_run,
    backup_run_now,
    heartbeat_seconds,
    heartbeat_stale,
    table_row_counts,
    this_worker,
)
from backups.services.sweeping import (
    MISSED_GRACE,
    UNDISPATCHED_AFTER,
    _backup_retry,
    backup_fail_abandoned,
    backups_fail_abandoned,
    backups_sweep,
)
from backups.services.verification import backup_verify

__all__ = [
    "CONFIG_DEBOUNCE",
    "DEFAULT_TIME_LIMIT_SECONDS",
    "HEARTBEAT_SECONDS",
    "HEARTBEAT_STALE",
    "MISSED_GRACE",
    "OPERATION_TIME_LIMIT",
    "UNDISPATCHED_AFTER",
    "BackupBusy",
    "BackupFigures",
    # Private, but tests/backups/test_worker.py checks that a re-run is never re-run with it.
    "_backup_retry",
    "audit_checkpoint_commit",
    "backup_claim",
    "backup_compare_with_history",
    "backup_fail_abandoned",
    "backup_history_findings",
    "backup_plan_apply_retention",
    "backup_plan_ensure",
    "backup_plan_on_registration",
    "backup_plan_run_scheduled",
    "backup_plan_save",
    "backup_request",
    "backup_run",
    "backup_run_now",
    "backup_verify",
    "backups_beyond_retention",
    "backups_fail_abandoned",
    "backups_load_defaults",
    "backups_sweep",
    "configuration_backup",
    "configuration_change_record",
    "configuration_commit_changes",
    "configuration_document_file",
    "configuration_restore",
    "drill_request",
    "drill_run",
    "drills_request_newest",
    "heartbeat_seconds",
    "heartbeat_stale",
    "plan_next_due",
    "restore_check",
    "restore_preview",
    "restore_request",
    "restore_run",
    "restore_run_now",
    "retention_keep",
    "schedule_crontab",
    # Moved to the adapter; the name stays here for bench/backups.py.
    "table_row_counts",
    "this_worker",
]
