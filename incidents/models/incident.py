"""Incidents: their severities, categories and states, their timelines and follow-up
action items."""

from django.conf import settings
from django.db import models


class Severity(models.TextChoices):
    SEV1 = "sev1", "SEV1 — critical: platform down or data at risk"
    SEV2 = "sev2", "SEV2 — high: major feature degraded for many users"
    SEV3 = "sev3", "SEV3 — moderate: partial degradation, workaround exists"
    SEV4 = "sev4", "SEV4 — low: minor issue, no user impact"


class Category(models.TextChoices):
    API = "api", "API performance"
    DATABASE = "database", "Database"
    CONTAINER = "container", "Container"
    SECURITY = "security", "Security"
    OTHER = "other", "Other"


class Status(models.TextChoices):
    OPEN = "open", "Open"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    INVESTIGATING = "investigating", "Investigating"
    MITIGATED = "mitigated", "Mitigated"
    RESOLVED = "resolved", "Resolved"
    CLOSED = "closed", "Closed"


ACTIVE_STATUSES = (Status.OPEN, Status.ACKNOWLEDGED, Status.INVESTIGATING, Status.MITIGATED)
# Severities whose post-incident review must be written before the incident can close.
REVIEW_REQUIRED = (Severity.SEV1, Severity.SEV2)


class Source(models.TextChoices):
    PERSON = "person", "Person"
    SCHEDULE = "schedule", "Schedule"
    ALERT = "alert", "Alert"
    WORKER = "worker", "Worker"
    LINK = "link", "Link in a message"


class Incident(models.Model):
    title = models.CharField(max_length=200)
    severity = models.CharField(max_length=8, choices=Severity.choices, default=Severity.SEV3)
    category = models.CharField(max_length=16, choices=Category.choices, default=Category.OTHER)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.PERSON)
    team = models.ForeignKey(
        "people.Team", null=True, blank=True, on_delete=models.PROTECT, related_name="incidents"
    )
    commander = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name="incident commander",
    )
    reporter = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    affected_systems = models.ManyToManyField(
        "systems.System", blank=True, related_name="incidents"
    )
    runbook = models.ForeignKey(
        "incidents.Runbook", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    alert_fingerprint = models.CharField(max_length=128, blank=True)
    grouped_under = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="grouped_incidents",
        help_text="The root cause's incident (its host unreachable) this one was folded into.",
    )
    symptoms = models.TextField(blank=True)
    impact = models.TextField(blank=True)
    summary = models.TextField(blank=True)
    resolution = models.TextField(blank=True)
    # Post-incident review (required before a SEV1/SEV2 incident closes)
    review_what_happened = models.TextField("what happened", blank=True)
    review_root_cause = models.TextField("root cause", blank=True)

    detected_at = models.DateTimeField()
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    mitigated_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-detected_at", "-id"]
        indexes = [
            models.Index(fields=["-detected_at", "-id"]),
            models.Index(fields=["status", "-detected_at"]),
            models.Index(fields=["severity", "-detected_at"]),
            models.Index(fields=["category", "-detected_at"]),
            models.Index(fields=["team", "status", "-detected_at"]),
        ]
        constraints = [
            # One open incident per alert fingerprint: a repeat firing joins it.
            models.UniqueConstraint(
                fields=["alert_fingerprint"],
                condition=~models.Q(alert_fingerprint="")
                & models.Q(status__in=["open", "acknowledged", "investigating", "mitigated"]),
                name="one_open_incident_per_fingerprint",
            )
        ]
        permissions = [
            ("manage_incident", "Can acknowledge, escalate, resolve, close and reopen incidents"),
            ("run_incident_steps", "Can mark incident checklist steps done"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.title}"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def allows_break_glass(self) -> bool:
        """During an active SEV1, an operation that needs approval may run without it (with a
        reason; the Security team is told)."""
        return self.severity == Severity.SEV1 and self.is_active

    @property
    def time_to_acknowledge(self):
        return self.acknowledged_at - self.detected_at if self.acknowledged_at else None

    @property
    def time_to_resolve(self):
        return self.resolved_at - self.detected_at if self.resolved_at else None

    @property
    def severity_label(self) -> str:
        return self.get_severity_display().split(" ")[0]


class TimelineKind(models.TextChoices):
    OPENED = "opened", "Opened"
    NOTE = "note", "Note"
    STATUS = "status", "Status change"
    STEP = "step", "Step done"
    OPERATION = "operation", "Operation result"
    NOTIFICATION = "notification", "Notification sent"
    ALERT = "alert", "Alert"
    CHANGE = "change", "Change"


class TimelineEvent(models.Model):
    """Append-only: what happened during the incident, who or what did it, and when."""

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="timeline")
    at = models.DateTimeField()
    kind = models.CharField(max_length=16, choices=TimelineKind.choices)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.PERSON)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    message = models.TextField()
    output = models.TextField(blank=True)
    operation = models.ForeignKey(
        "operations.Operation",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["incident", "at", "id"])]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.message[:80]}"

    def save(self, *args, **kwargs):
        if self.pk is not None and not kwargs.get("force_insert"):
            raise PermissionError("Timeline events are append-only.")
        super().save(*args, **kwargs)


class ActionItem(models.Model):
    """A follow-up from the post-incident review, with an owner and a due date."""

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="action_items")
    description = models.CharField(max_length=500)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    due_date = models.DateField()
    done = models.BooleanField(default=False)

    class Meta:
        ordering = ["due_date", "id"]

    def __str__(self) -> str:
        return self.description
