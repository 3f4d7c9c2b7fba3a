"""The public status page: the platform's user-facing components (each mapped to registered
systems), their derived state, daily uptime, email subscribers and the precomputed page."""

from __future__ import annotations

import secrets

from django.db import models


class ComponentState(models.TextChoices):
    OPERATIONAL = "operational", "Operational"
    DEGRADED = "degraded", "Degraded performance"
    PARTIAL_OUTAGE = "partial_outage", "Partial outage"
    MAJOR_OUTAGE = "major_outage", "Major outage"
    MAINTENANCE = "maintenance", "Under maintenance"


# Worst first: the page's overall banner is the worst component state.
STATE_RANK = {
    ComponentState.MAJOR_OUTAGE: 4,
    ComponentState.PARTIAL_OUTAGE: 3,
    ComponentState.DEGRADED: 2,
    ComponentState.MAINTENANCE: 1,
    ComponentState.OPERATIONAL: 0,
}


class Component(models.Model):
    """A part of the platform its users know (API, Web app, Database, Background jobs)."""

    name = models.CharField(max_length=80, unique=True, help_text="Shown publicly.")
    description = models.CharField(max_length=255, blank=True, help_text="Shown publicly.")
    position = models.PositiveSmallIntegerField(default=0, help_text="Order on the page.")
    systems = models.ManyToManyField(
        "systems.System",
        blank=True,
        related_name="status_components",
        help_text="The registered systems whose checks and alerts decide this component's "
        "state. Never shown publicly.",
    )
    # Derived by the status page's refresh (services.status_refresh), never edited.
    state = models.CharField(
        max_length=16, choices=ComponentState.choices, default=ComponentState.OPERATIONAL
    )
    state_since = models.DateTimeField(null=True, blank=True)
    state_reason = models.TextField(
        blank=True, help_text="Why the state is what it is (internal: names systems)."
    )

    class Meta:
        ordering = ["position", "name"]

    def __str__(self) -> str:
        return self.name


class ComponentDay(models.Model):
    """One component's availability on one UTC day, from the collected samples and rollups.
    Days before today are final once computed; today's is recomputed on each refresh."""

    component = models.ForeignKey(Component, on_delete=models.CASCADE, related_name="days")
    day = models.DateField()
    available_percent = models.FloatField(null=True, help_text="Empty: no samples that day.")
    samples = models.PositiveIntegerField(default=0)
    final = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["component", "day"], name="statuspage_day_once")
        ]

    def __str__(self) -> str:
        return f"{self.component} {self.day}: {self.available_percent}"


def _token() -> str:
    return secrets.token_urlsafe(32)


class Subscriber(models.Model):
    """An email address that asked for updates (double opt-in: confirmed_at is set only by
    the link sent to it). No components: every component."""

    email = models.EmailField(unique=True)
    components = models.ManyToManyField(Component, blank=True, related_name="subscribers")
    # The unsubscribe link's secret; the confirmation link is signed separately.
    token = models.CharField(max_length=64, unique=True, default=_token, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    confirmation_sent_at = models.DateTimeField(null=True, blank=True, editable=False)
    confirmed_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["email"]
        indexes = [models.Index(fields=["confirmed_at"], name="statuspage_sub_confirmed")]

    def __str__(self) -> str:
        return self.email


class StatusSnapshot(models.Model):
    """The page as last computed (one row): served as is, so a visit costs one query."""

    computed_at = models.DateTimeField()
    version = models.PositiveBigIntegerField(default=0)
    overall_state = models.CharField(max_length=16, choices=ComponentState.choices)
    html = models.TextField()

    def __str__(self) -> str:
        return f"Status page v{self.version} at {self.computed_at:%Y-%m-%d %H:%M:%S}"
