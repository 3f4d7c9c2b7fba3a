"""Operations on real systems: a row first (who asked what, why, on which system), then a
background task that acts and stores the outcome on the row."""

from django.conf import settings
from django.db import models

from opsportal.jobs.models import JobFields
from opsportal.operations.kinds import KINDS


class OperationStatus(models.TextChoices):
    # A person's request of a kind that needs a second person's approval: not dispatched
    # until approved (then queued); rejected or expired, it is cancelled.
    AWAITING = "awaiting", "Awaiting approval"
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


ACTIVE_STATUSES = (OperationStatus.QUEUED, OperationStatus.RUNNING)
# A change awaiting approval already holds its system: approving it never races another.
BLOCKING_STATUSES = (OperationStatus.AWAITING, *ACTIVE_STATUSES)
FINISHED_STATUSES = (OperationStatus.SUCCEEDED, OperationStatus.FAILED, OperationStatus.CANCELLED)

# Stored output is bounded so a chatty container cannot bloat the portal's database.
OUTPUT_LIMIT_CHARS = 200_000


class Operation(JobFields):
    kind = models.CharField(
        max_length=40, choices=[(k, spec.label) for k, spec in KINDS.items()], db_index=True
    )
    target = models.ForeignKey(
        "systems.System", on_delete=models.PROTECT, related_name="operations"
    )
    params = models.JSONField(default=dict, blank=True)
    changing = models.BooleanField(
        default=False, editable=False, help_text="Changes the target (restart, kill, clear…)."
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    reason = models.CharField(max_length=500, blank=True)
    incident = models.ForeignKey(
        "incidents.Incident",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="operations",
    )
    status = models.CharField(
        max_length=16, choices=OperationStatus.choices, default=OperationStatus.QUEUED
    )
    output = models.TextField(blank=True, help_text="What the operation found or did, in words.")
    result = models.JSONField(default=dict, blank=True, help_text="The same, as structured data.")
    preview = models.JSONField(
        default=dict,
        blank=True,
        help_text="What the requester was shown it would do, read live before confirming "
        "(opsportal.operations.previews); the operation acts on that and says what differed.",
    )
    # error, started_at, finished_at and dispatch_count are JobFields'; requested_at has
    # never been indexed here, and an operation has no worker or heartbeat columns.
    requested_at = models.DateTimeField(auto_now_add=True)
    worker = None
    heartbeat_at = None
    last_dispatched_at = models.DateTimeField(null=True, blank=True)
    time_limit_seconds = models.PositiveIntegerField(default=60)

    class Meta:
        ordering = ["-requested_at", "-id"]
        indexes = [
            models.Index(fields=["status", "requested_at"]),
            models.Index(fields=["target", "-requested_at"]),
            models.Index(fields=["incident", "-requested_at"]),
        ]
        constraints = [
            # The runbook's "one change at a time": two restarts or kills racing on one
            # system are refused by the database, not only by a check in Python.
            models.UniqueConstraint(
                fields=["target"],
                condition=models.Q(changing=True, status__in=["awaiting", "queued", "running"]),
                name="one_changing_operation_per_target",
            )
        ]
        permissions = [
            *[(spec.permission, spec.permission_label) for spec in KINDS.values()],
            # Without it, an operation requested for an incident may only act on the
            # incident's affected systems (and containers on an affected Docker engine).
            (
                "operate_any_system",
                "Can run incident operations on systems the incident does not list as affected",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} on {self.target_id and self.target} (#{self.pk})"

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_STATUSES


class Evidence(models.Model):
    """One preserved artefact of a security incident, with its chain of custody."""

    operation = models.ForeignKey(Operation, on_delete=models.PROTECT, related_name="evidence")
    incident = models.ForeignKey(
        "incidents.Incident",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="evidence",
    )
    name = models.CharField(max_length=200, help_text="e.g. logs.txt, inspect.json, diff.txt")
    description = models.CharField(max_length=255, blank=True)
    path = models.CharField(max_length=500, help_text="Relative to MEDIA_ROOT.")
    size_bytes = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    captured_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    captured_at = models.DateTimeField()
    source_system = models.CharField(max_length=200, help_text="Engine and container captured.")

    class Meta:
        ordering = ["captured_at", "id"]
        verbose_name_plural = "evidence"
        # Downloading is its own permission: the automatic view_evidence (part of every
        # role's "view everything") only shows that an artefact exists, while the file holds
        # the container's full environment and possibly its whole filesystem.
        permissions = [("download_evidence", "Can download preserved evidence files")]

    def __str__(self) -> str:
        return f"{self.name} ({self.sha256[:12]}…)"
