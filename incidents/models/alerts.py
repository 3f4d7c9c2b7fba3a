"""Alerts received (Alertmanager or a threshold rule) and the incidents they open."""

from django.db import models

from incidents.models.incident import Category, Incident, Severity


class AlertStatus(models.TextChoices):
    FIRING = "firing", "Firing"
    RESOLVED = "resolved", "Resolved"


class Alert(models.Model):
    """One alert notification received (Alertmanager or a threshold rule)."""

    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    fingerprint = models.CharField(max_length=128, db_index=True)
    status = models.CharField(max_length=16, choices=AlertStatus.choices)
    title = models.CharField(max_length=300)
    severity = models.CharField(max_length=8, choices=Severity.choices)
    category = models.CharField(max_length=16, choices=Category.choices)
    source = models.CharField(max_length=32, default="alertmanager")
    evidence = models.TextField(blank=True)
    systems = models.ManyToManyField("systems.System", blank=True, related_name="+")
    incident = models.ForeignKey(
        Incident, null=True, blank=True, on_delete=models.SET_NULL, related_name="alerts"
    )
    suppressed_by = models.ForeignKey(
        "maintenance.MaintenanceWindow",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="suppressed_alerts",
    )
    # One page per root cause (incidents.services.grouping).
    outage_of = models.ForeignKey(
        "systems.System",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The system this alert says is unreachable.",
    )
    runs_on = models.ForeignKey(
        "systems.System",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The host (Docker engine) what this alert is about runs on.",
    )
    related = models.BooleanField(
        default=False,
        help_text="Joined its incident as a related alert: what it is about runs on the "
        "unreachable host that incident is about, so it paged nobody.",
    )

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [models.Index(fields=["runs_on", "status"], name="incidents_alert_runs_on")]

    def __str__(self) -> str:
        return f"{self.status} {self.title}"
