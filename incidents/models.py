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


class Incident(models.Model):
    title = models.CharField(max_length=200)
    severity = models.CharField(max_length=8, choices=Severity.choices, default=Severity.SEV3)
    category = models.CharField(max_length=16, choices=Category.choices, default=Category.OTHER)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    team = models.ForeignKey(
        "people.Team", null=True, blank=True, on_delete=models.PROTECT, related_name="incidents"
    )
    reporter = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    symptoms = models.TextField(blank=True)
    detected_at = models.DateTimeField()

    class Meta:
        ordering = ["-detected_at"]

    def __str__(self) -> str:
        return f"#{self.pk} {self.title}"
