"""What the public status page says about an incident, and its updates."""

from django.conf import settings
from django.db import models

from incidents.models.incident import Incident


class PublicIncident(models.Model):
    """What the public status page says about an incident: its own title, the components it
    affects and (optionally) the state it sets on them while it lasts. Kept apart from the
    incident's internal fields and timeline, none of which is ever shown publicly."""

    incident = models.OneToOneField(Incident, on_delete=models.CASCADE, related_name="public")
    title = models.CharField("public title", max_length=200)
    components = models.ManyToManyField("statuspage.Component", blank=True, related_name="+")
    component_state = models.CharField(
        "state of its components",
        max_length=16,
        blank=True,
        choices=[
            ("degraded", "Degraded performance"),
            ("partial_outage", "Partial outage"),
            ("major_outage", "Major outage"),
            ("maintenance", "Under maintenance"),
        ],
        help_text="Empty: the components keep the state monitoring derives.",
    )
    published_at = models.DateTimeField()
    resolved_at = models.DateTimeField(
        null=True, blank=True, help_text="Set by the public update that says resolved."
    )

    class Meta:
        ordering = ["-published_at"]
        permissions = [("publish_incident", "Can publish incidents and post public updates")]

    def __str__(self) -> str:
        return self.title


class PublicUpdate(models.Model):
    """One update on the status page (investigating / identified / monitoring / resolved)."""

    public_incident = models.ForeignKey(
        PublicIncident, on_delete=models.CASCADE, related_name="updates"
    )
    at = models.DateTimeField()
    status = models.CharField(
        max_length=16,
        choices=[
            ("investigating", "Investigating"),
            ("identified", "Identified"),
            ("monitoring", "Monitoring"),
            ("resolved", "Resolved"),
        ],
    )
    message = models.TextField()
    posted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["public_incident", "-at"], name="incidents_pubupdate_at")]

    def __str__(self) -> str:
        return f"{self.get_status_display()}: {self.message[:60]}"
