from django.conf import settings
from django.db import models

from opsportal.audit.chain import record_digest


class AuditSource(models.TextChoices):
    ADMIN = "admin", "Admin"
    API = "api", "API"
    SCHEDULE = "schedule", "Schedule"
    WORKER = "worker", "Worker"
    CLI = "cli", "Command line"
    SYSTEM = "system", "System"
    # A signed single-use link sent in a page (acknowledge from the message).
    LINK = "link", "Link in a message"


class AuditAction(models.TextChoices):
    CREATE = "create", "Created"
    CHANGE = "change", "Changed"
    DELETE = "delete", "Deleted"
    OPERATION = "operation", "Operation"
    LOGIN = "login", "Logged in"
    LOGIN_FAILED = "login_failed", "Login failed"


class AuditOutcome(models.TextChoices):
    SUCCESS = "success", "Success"
    FAILURE = "failure", "Failure"
    REQUESTED = "requested", "Requested"


class AuditRecordQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise PermissionError("Audit records are append-only.")

    def delete(self):
        raise PermissionError("Audit records are append-only.")


class AuditRecord(models.Model):
    """One thing that happened: who, when, what, from where, with what outcome.

    Records form a keyed hash chain (each HMAC covers the previous record's hash; see
    opsportal/audit/chain.py), so a row edited or removed behind the portal's back is found
    by `manage.py verify_audit`; signed checkpoints kept outside the database catch a
    shortened history.
    """

    at = models.DateTimeField(db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    actor_name = models.CharField(max_length=150, blank=True)
    source = models.CharField(max_length=16, choices=AuditSource.choices)
    action = models.CharField(max_length=16, choices=AuditAction.choices)
    object_type = models.CharField(max_length=100, blank=True, db_index=True)
    object_id = models.CharField(max_length=64, blank=True, db_index=True)
    object_repr = models.CharField(max_length=255, blank=True)
    changes = models.JSONField(default=dict, blank=True)
    outcome = models.CharField(
        max_length=16, choices=AuditOutcome.choices, default=AuditOutcome.SUCCESS
    )
    message = models.TextField(blank=True)
    remote_addr = models.GenericIPAddressField(null=True, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    objects = AuditRecordQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["object_type", "object_id", "-id"]),
            models.Index(fields=["actor", "-id"]),
        ]

    def __str__(self) -> str:
        who = self.actor_name or self.get_source_display()
        return f"{self.at:%Y-%m-%d %H:%M:%S} {who} {self.action} {self.object_repr}"

    def save(self, *args, **kwargs):
        if self.pk is not None and not kwargs.get("force_insert"):
            raise PermissionError("Audit records are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise PermissionError("Audit records are append-only.")

    def compute_hash(self) -> str:
        return record_digest(self)
