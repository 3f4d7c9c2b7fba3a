"""Escalation: who is paged, in what order, until someone answers; the pages sent and
the links that acknowledge from the message."""

from django.db import models

from incidents.models.incident import Incident, Severity


class EscalationTarget(models.TextChoices):
    ON_CALL = "on_call", "The rotation's current on-call"
    CONTACT = "contact", "A named contact"
    TEAM = "team", "The whole team"
    POLICY = "policy", "Another policy (the next level)"


class EscalationPolicy(models.Model):
    """Whom to page, in order, until someone acknowledges: for a team, optionally only for
    one severity (a policy without a severity covers the team's other severities)."""

    name = models.CharField(max_length=100, unique=True)
    team = models.ForeignKey(
        "people.Team", on_delete=models.CASCADE, related_name="escalation_policies"
    )
    severity = models.CharField(
        max_length=8,
        choices=Severity.choices,
        blank=True,
        help_text="Empty: every severity without a policy of its own.",
    )
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["team", "severity", "name"]
        verbose_name_plural = "escalation policies"
        constraints = [
            models.UniqueConstraint(
                fields=["team", "severity"],
                condition=models.Q(active=True),
                name="one_active_escalation_policy_per_team_severity",
                violation_error_message="This team already has an active policy for this severity.",
            )
        ]

    def __str__(self) -> str:
        return self.name


class EscalationStep(models.Model):
    """One step: page someone on some channels, then wait this long for an acknowledgement
    before the next step. The last step may be sent again `repeat` more times."""

    policy = models.ForeignKey(EscalationPolicy, on_delete=models.CASCADE, related_name="steps")
    position = models.PositiveSmallIntegerField()
    target = models.CharField(max_length=16, choices=EscalationTarget.choices)
    contact = models.ForeignKey(
        "people.Contact", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    team = models.ForeignKey(
        "people.Team",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="For 'the whole team': which team (empty: the policy's team).",
    )
    next_policy = models.ForeignKey(
        EscalationPolicy,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="For 'another policy': its steps follow this one's.",
    )
    email = models.BooleanField(default=True, help_text="Page by email (and pager address).")
    chat = models.BooleanField(default=True, help_text="Post to the team's chat webhooks.")
    wait_minutes = models.IntegerField(
        default=5, help_text="How long to wait for an acknowledgement before the next step."
    )
    repeat = models.PositiveSmallIntegerField(
        default=0, help_text="Last step only: how many more times to send it, each after the wait."
    )

    class Meta:
        ordering = ["policy", "position"]
        constraints = [
            models.UniqueConstraint(fields=["policy", "position"], name="escalation_step_position"),
            models.CheckConstraint(
                condition=models.Q(wait_minutes__gt=0),
                name="escalation_step_waits",
                violation_error_message="A step must wait more than 0 minutes.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.position}. {self.get_target_display()}"


class EscalationStatus(models.TextChoices):
    ACTIVE = "active", "Escalating"
    ACKNOWLEDGED = "acknowledged", "Stopped: acknowledged"
    RESOLVED = "resolved", "Stopped: resolved"
    REPLACED = "replaced", "Stopped: replaced by a new escalation"
    EXHAUSTED = "exhausted", "Every step sent, nobody acknowledged"


class Escalation(models.Model):
    """One incident's run through a policy: its pages are planned up front, each due at its
    time, and stop the moment anyone acknowledges or resolves."""

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="escalations")
    policy = models.ForeignKey(
        EscalationPolicy, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    policy_name = models.CharField(max_length=100)
    status = models.CharField(
        max_length=16, choices=EscalationStatus.choices, default=EscalationStatus.ACTIVE
    )
    started_at = models.DateTimeField()
    stopped_at = models.DateTimeField(null=True, blank=True)
    stopped_by = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["incident"],
                condition=models.Q(status="active"),
                name="one_active_escalation_per_incident",
            )
        ]

    def __str__(self) -> str:
        return f"{self.policy_name} for incident #{self.incident_id}"


class PageStatus(models.TextChoices):
    SCHEDULED = "scheduled", "Scheduled"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    CANCELLED = "cancelled", "Not sent (escalation stopped)"


class EscalationPage(models.Model):
    """One planned step of an escalation: a row first (scheduled, due at its time), claimed
    and sent at most once by whoever finds it due (its task or the sweeper)."""

    escalation = models.ForeignKey(Escalation, on_delete=models.CASCADE, related_name="pages")
    sequence = models.PositiveSmallIntegerField()
    step = models.ForeignKey(EscalationStep, null=True, on_delete=models.SET_NULL, related_name="+")
    description = models.CharField(max_length=300)
    due_at = models.DateTimeField()
    status = models.CharField(
        max_length=16, choices=PageStatus.choices, default=PageStatus.SCHEDULED
    )
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    outcome = models.TextField(blank=True)
    notifications = models.ManyToManyField("people.Notification", blank=True, related_name="+")

    class Meta:
        ordering = ["escalation", "sequence"]
        indexes = [models.Index(fields=["status", "due_at"])]
        constraints = [
            models.UniqueConstraint(
                fields=["escalation", "sequence"], name="escalation_page_sequence"
            )
        ]

    def __str__(self) -> str:
        return f"{self.description} (due {self.due_at:%H:%M})"


class AcknowledgeLink(models.Model):
    """A signed, single-use, expiring link that acknowledges one incident as one person,
    sent in a page. Only a hash of the link's secret is kept."""

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="+")
    contact = models.ForeignKey("people.Contact", on_delete=models.CASCADE, related_name="+")
    secret_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Acknowledge link for incident #{self.incident_id} ({self.contact})"
