"""Two-person approval: which requests need a second person's yes (policies), and each
request waiting for it (the subject is any row: an operation, a restore), with the decision."""

from django.conf import settings
from django.contrib.contenttypes.fields import GenericForeignKey
from django.contrib.contenttypes.models import ContentType
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

DEFAULT_EXPIRY_MINUTES = 30


class ApprovalScope(models.TextChoices):
    """What an approver answers for: one approve permission per scope."""

    CONTAINERS = "containers", "Container and Docker engine operations"
    DATABASES = "databases", "Database operations"
    CACHES = "caches", "Cache operations"
    API = "api", "API operations"
    RESTORES = "restores", "Restores of backups"


def approve_permission(scope: str) -> str:
    """The permission (app_label.codename) an approver of `scope` needs."""
    return f"approvals.approve_{scope}"


class ApprovalPolicy(models.Model):
    """Whether one kind of request ("operation:<kind>" or "restore") needs a second person."""

    subject = models.CharField(max_length=60, unique=True, editable=False)
    label = models.CharField(max_length=200, editable=False)
    scope = models.CharField(max_length=16, choices=ApprovalScope.choices, editable=False)
    required = models.BooleanField(
        default=False, help_text="A person's request waits until someone else approves it."
    )
    expires_after_minutes = models.PositiveIntegerField(
        default=DEFAULT_EXPIRY_MINUTES,
        validators=[MinValueValidator(1), MaxValueValidator(24 * 60)],
        help_text="An approval not given within this time expires and the request is dropped.",
    )
    exempt_when_narrowed = models.BooleanField(
        default=False,
        help_text="Not needed when the request is narrowed to one application or user "
        "(terminate idle connections): only the unfiltered 'terminate all' waits.",
    )

    class Meta:
        ordering = ["subject"]
        verbose_name_plural = "approval policies"

    def __str__(self) -> str:
        return f"{self.label}: {'needs approval' if self.required else 'no approval'}"


class ApprovalStatus(models.TextChoices):
    PENDING = "pending", "Awaiting approval"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    EXPIRED = "expired", "Expired"
    WITHDRAWN = "withdrawn", "Withdrawn"


class ApprovalRequest(models.Model):
    """One request waiting for (or decided by) a second person."""

    policy_subject = models.CharField(max_length=60)
    scope = models.CharField(max_length=16, choices=ApprovalScope.choices)
    subject_type = models.ForeignKey(ContentType, on_delete=models.PROTECT, related_name="+")
    subject_id = models.PositiveBigIntegerField()
    subject = GenericForeignKey("subject_type", "subject_id")
    summary = models.CharField(max_length=500, help_text="What will be done, in words.")
    reason = models.CharField(max_length=500, blank=True, help_text="The requester's reason.")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    requested_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    status = models.CharField(
        max_length=16, choices=ApprovalStatus.choices, default=ApprovalStatus.PENDING
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_reason = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-requested_at", "-id"]
        indexes = [models.Index(fields=["status", "expires_at"])]
        constraints = [
            models.UniqueConstraint(
                fields=["subject_type", "subject_id"], name="one_approval_per_subject"
            )
        ]
        permissions = [
            (f"approve_{scope.value}", f"Can approve or reject: {scope.label.lower()}")
            for scope in ApprovalScope
        ]

    def __str__(self) -> str:
        return f"Approval #{self.pk}: {self.summary}"

    @property
    def pending(self) -> bool:
        return self.status == ApprovalStatus.PENDING
