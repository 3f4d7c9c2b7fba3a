"""The runbook's "Backup & Recovery": plans, backups, restores and restore drills."""

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from opsportal.jobs.models import JobFields

DEFAULT_SCHEDULE = "0 2 * * *"  # the runbook: daily at 2 AM UTC


class BackupMethod(models.TextChoices):
    NETWORK = "network", "pg_dump over the network"
    CONTAINER = "container", "pg_dump inside the database's container (docker exec)"


class BackupFormat(models.TextChoices):
    CUSTOM = "custom", "Custom (pg_restore)"
    PLAIN = "plain", "Plain SQL (psql)"


class BackupStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class BackupTrigger(models.TextChoices):
    MANUAL = "manual", "Manual"
    SCHEDULED = "scheduled", "Scheduled"
    SAFETY = "safety", "Safety backup before a restore"
    MAINTENANCE = "maintenance", "Maintenance window"
    CLI = "cli", "Command line"


class Verification(models.TextChoices):
    PENDING = "pending", "Not verified yet"
    VERIFIED = "verified", "Verified"
    FAILED = "failed", "Verification failed"


class HistoryCheck(models.TextChoices):
    """How a verified backup compares with the database's recent backups (size, duration,
    row counts per table): backups/services/anomalies.py."""

    PENDING = "", "Not compared yet"
    NOT_JUDGED = "not_judged", "Not judged (too few earlier backups)"
    NORMAL = "normal", "In line with its history"
    SUSPICIOUS = "suspicious", "Suspicious"


# A table whose rows fell by more than this share since the previous backup makes the
# backup suspicious, unless the plan says otherwise.
DEFAULT_ROW_DROP_PERCENT = 50


class DrillResult(models.TextChoices):
    NONE = "", "No drill yet"
    PASSED = "passed", "Drill passed"
    FAILED = "failed", "Drill failed"


class BackupPlan(models.Model):
    """How and when one PostgreSQL database is backed up (the runbook: daily at 02:00 UTC)."""

    database = models.OneToOneField(
        "systems.PostgresDatabase", on_delete=models.PROTECT, related_name="backup_plan"
    )
    enabled = models.BooleanField(default=True)
    schedule = models.CharField(
        max_length=100,
        default=DEFAULT_SCHEDULE,
        help_text="Cron expression in UTC: minute hour day-of-month month day-of-week.",
    )
    method = models.CharField(
        max_length=16, choices=BackupMethod.choices, default=BackupMethod.NETWORK
    )
    format = models.CharField(
        max_length=16, choices=BackupFormat.choices, default=BackupFormat.CUSTOM
    )
    compression = models.PositiveSmallIntegerField(
        default=6,
        validators=[MaxValueValidator(9)],
        help_text="0 (none) to 9 (smallest, slowest).",
    )
    storage_location = models.CharField(
        max_length=500,
        blank=True,
        help_text="A local directory (or file:// URL); empty means the portal's BACKUP_ROOT.",
    )
    keep_daily = models.PositiveSmallIntegerField(default=7)
    keep_weekly = models.PositiveSmallIntegerField(default=4)
    keep_monthly = models.PositiveSmallIntegerField(default=6)
    time_limit_seconds = models.PositiveIntegerField(
        default=3 * 3600,
        validators=[MinValueValidator(60)],
        help_text="A run still going after this long is stopped and recorded as failed.",
    )
    open_incident_on_failure = models.BooleanField(
        default=False,
        help_text="Besides notifying the database admins, open an incident when a scheduled "
        "backup fails or is missed.",
    )
    suspicious_row_drop_percent = models.PositiveSmallIntegerField(
        "suspicious row drop (%)",
        default=DEFAULT_ROW_DROP_PERCENT,
        validators=[MinValueValidator(1), MaxValueValidator(100)],
        help_text="A verified backup in which a table has lost more than this share of its "
        "rows since the previous backup is marked suspicious and alerts the database admins "
        "(100 turns this check off; a table that disappeared is still reported).",
    )
    periodic_task = models.OneToOneField(
        "django_celery_beat.PeriodicTask",
        null=True,
        blank=True,
        editable=False,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    # The due time of the last scheduled run already reported as missed (alert once).
    missed_reported_for = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["database__name"]

    def __str__(self) -> str:
        return f"Backups of {self.database}"


class Backup(JobFields):
    """One backup run: a row first (queued), then the dump written by a worker."""

    database = models.ForeignKey(
        "systems.PostgresDatabase", on_delete=models.PROTECT, related_name="backups"
    )
    plan = models.ForeignKey(
        BackupPlan, null=True, blank=True, on_delete=models.SET_NULL, related_name="backups"
    )
    status = models.CharField(
        max_length=16, choices=BackupStatus.choices, default=BackupStatus.QUEUED
    )
    trigger = models.CharField(max_length=16, choices=BackupTrigger.choices)
    reason = models.CharField(max_length=500, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    method = models.CharField(max_length=16, choices=BackupMethod.choices)
    format = models.CharField(max_length=16, choices=BackupFormat.choices)
    compression = models.PositiveSmallIntegerField(default=6)
    storage_location = models.CharField(max_length=500, blank=True)
    file_name = models.CharField(max_length=255, blank=True)
    size_bytes = models.BigIntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    server_version = models.CharField(max_length=64, blank=True)
    # Rows per table in the snapshot the dump was taken from; the drill compares against it.
    table_row_counts = models.JSONField(default=dict, blank=True)
    # requested_at, started_at, worker and heartbeat_at (refreshed while the dump runs; a
    # stale one means the worker died mid-backup) are JobFields'. finished_at is indexed
    # here; what went wrong is in `message`, and a backup is not re-dispatched by count.
    finished_at = models.DateTimeField(null=True, blank=True, db_index=True)
    dispatch_count = None
    error = None
    duration_seconds = models.FloatField(null=True, blank=True)
    message = models.TextField(blank=True, help_text="What went wrong, with pg_dump's messages.")
    verification = models.CharField(
        max_length=16, choices=Verification.choices, default=Verification.PENDING
    )
    verified_at = models.DateTimeField(null=True, blank=True)
    verification_message = models.TextField(blank=True)
    drill_result = models.CharField(
        max_length=16, choices=DrillResult.choices, default=DrillResult.NONE, blank=True
    )
    pruned_at = models.DateTimeField(
        null=True, blank=True, help_text="When retention deleted the file."
    )
    history_check = models.CharField(
        "compared with history",
        max_length=16,
        choices=HistoryCheck.choices,
        default=HistoryCheck.PENDING,
        blank=True,
    )
    # What the comparison found ("Dump is 2.1 MiB, under half the median 13.0 MiB of the
    # last 7"), one line each; or why no judgement was made.
    history_warnings = models.JSONField(default=list, blank=True)
    history_checked_at = models.DateTimeField(null=True, blank=True)
    # The incident the "suspicious backup" alert opened or joined (incidents' primary key:
    # backups reaches incidents only through the alert hand-off).
    history_incident_id = models.BigIntegerField(null=True, blank=True)
    # A scheduled backup whose worker was lost is re-run once, automatically: the re-run
    # points at it (one-to-one, so never twice) and is itself never re-run.
    retry_of = models.OneToOneField(
        "self",
        null=True,
        blank=True,
        editable=False,
        on_delete=models.SET_NULL,
        related_name="retry",
        help_text="The scheduled backup this one re-runs after its worker was lost.",
    )

    class Meta:
        ordering = ["-requested_at"]
        permissions = [
            ("run_backup", "Can start a backup"),
            ("restore_backup", "Can restore a backup"),
            ("drill_backup", "Can run a restore drill"),
        ]
        indexes = [
            models.Index(fields=["database", "status", "-finished_at"]),
            models.Index(fields=["status", "requested_at"]),
            models.Index(fields=["history_check", "-requested_at"], name="backup_history_check"),
        ]
        constraints = [
            # Two runs for the same database never overlap: the database enforces it.
            models.UniqueConstraint(
                fields=["database"],
                condition=Q(status="running"),
                name="backup_one_running_per_database",
                violation_error_message="A backup of this database is already running.",
            )
        ]

    def __str__(self) -> str:
        when = self.requested_at.strftime("%Y-%m-%d %H:%M") if self.requested_at else "new"
        return f"Backup #{self.pk} of {self.database} ({when})"

    @property
    def is_restorable(self) -> bool:
        return self.status == BackupStatus.SUCCEEDED and self.pruned_at is None


class RestoreStatus(models.TextChoices):
    """Where a restore or a restore drill stands (a backup has its own BackupStatus)."""

    # A person's restore waits for a second person (two-person approval); not dispatched
    # until approved, "not approved" when rejected or expired.
    AWAITING = "awaiting", "Awaiting approval"
    NOT_APPROVED = "not_approved", "Not approved"
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class Restore(JobFields):
    """The runbook's "Restore": a backup written into a registered database."""

    backup = models.ForeignKey(Backup, on_delete=models.PROTECT, related_name="restores")
    target = models.ForeignKey(
        "systems.PostgresDatabase", on_delete=models.PROTECT, related_name="restores"
    )
    status = models.CharField(
        max_length=16, choices=RestoreStatus.choices, default=RestoreStatus.QUEUED
    )
    reason = models.CharField(max_length=500)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    disconnect_sessions = models.BooleanField(
        default=False, help_text="End other sessions on the target before restoring."
    )
    safety_backup = models.ForeignKey(
        Backup, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # requested_at, started_at and finished_at are JobFields'; what went wrong is in
    # `message`, and a restore has no worker, heartbeat or dispatch count columns.
    worker = None
    heartbeat_at = None
    dispatch_count = None
    error = None
    duration_seconds = models.FloatField(null=True, blank=True)
    message = models.TextField(blank=True)
    preview = models.JSONField(
        default=dict,
        blank=True,
        help_text="What the requester was shown: the backup's size and age and the target's "
        "size, tables and sessions, read live before confirming.",
    )

    class Meta:
        ordering = ["-requested_at"]
        indexes = [models.Index(fields=["status", "requested_at"])]

    def __str__(self) -> str:
        return f"Restore #{self.pk} of backup #{self.backup_id} into {self.target}"


class RestoreDrill(JobFields):
    """A backup restored into a scratch database and its row counts compared."""

    backup = models.ForeignKey(Backup, on_delete=models.CASCADE, related_name="drills")
    status = models.CharField(
        max_length=16, choices=RestoreStatus.choices, default=RestoreStatus.QUEUED
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    scratch_database = models.CharField(max_length=63, blank=True)
    # requested_at, started_at and finished_at are JobFields'; as for a restore, no worker,
    # heartbeat or dispatch count, and what went wrong is in `message`.
    worker = None
    heartbeat_at = None
    dispatch_count = None
    error = None
    duration_seconds = models.FloatField(null=True, blank=True)
    tables_compared = models.PositiveIntegerField(default=0)
    mismatches = models.JSONField(default=dict, blank=True)
    message = models.TextField(blank=True)

    class Meta:
        ordering = ["-requested_at"]
        indexes = [models.Index(fields=["status", "requested_at"])]

    def __str__(self) -> str:
        return f"Drill #{self.pk} of backup #{self.backup_id}"


class ConfigurationChange(models.Model):
    """A change to exported configuration waiting for its commit (the runbook's
    "Configuration Backups": committed after changes). Changes within the debounce window
    of each other are committed together, once."""

    changed_at = models.DateTimeField(db_index=True)
    # Not committed before this: a later change in the same burst moves the burst's end.
    commit_after = models.DateTimeField()
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_name = models.CharField(max_length=150, blank=True)
    description = models.CharField(max_length=300)
    committed_at = models.DateTimeField(null=True, blank=True)
    # The Git commit that holds it; empty when the export's bytes did not change.
    commit = models.CharField(max_length=40, blank=True)

    class Meta:
        ordering = ["changed_at"]
        indexes = [
            models.Index(
                fields=["commit_after"],
                condition=Q(committed_at=None),
                name="config_change_pending",
            )
        ]

    def __str__(self) -> str:
        return f"{self.description} by {self.actor_name or 'the system'}"
