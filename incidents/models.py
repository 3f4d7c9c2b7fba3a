"""Incidents (the runbook's "Incident Response"), their timelines and checklists, the
runbooks they follow, and the alerts that open them."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from opsportal.operations.fields import HELP as PARAMS_HELP
from opsportal.operations.fields import OperationParamsField
from opsportal.operations.kinds import KINDS, InvalidParameters, check_stored_params


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


class Phase(models.TextChoices):
    SYMPTOMS = "symptoms", "Symptoms"
    INVESTIGATION = "investigation", "Investigation"
    RESOLUTION = "resolution", "Resolution"
    IMMEDIATE_RESPONSE = "immediate", "Immediate Response"
    RECOVERY = "recovery", "Recovery"


class Runbook(models.Model):
    name = models.CharField(max_length=200, unique=True)
    category = models.CharField(max_length=16, choices=Category.choices)
    symptoms = models.TextField(blank=True, help_text="One symptom per line, as the runbook has.")
    description = models.TextField(blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class RunbookStep(models.Model):
    """One step of a playbook: manual, or bound to an operation kind with parameters."""

    runbook = models.ForeignKey(Runbook, on_delete=models.CASCADE, related_name="steps")
    phase = models.CharField(max_length=16, choices=Phase.choices)
    position = models.PositiveSmallIntegerField()
    text = models.CharField(max_length=300)
    operation_kind = models.CharField(
        max_length=40, blank=True, help_text="Empty: a manual step (mark done with a note)."
    )
    operation_params = OperationParamsField(default=dict, blank=True, help_text=PARAMS_HELP)

    class Meta:
        ordering = ["runbook", "position"]
        constraints = [
            models.UniqueConstraint(fields=["runbook", "position"], name="runbook_step_position")
        ]

    def __str__(self) -> str:
        return f"{self.get_phase_display()} {self.position}. {self.text}"

    def clean(self) -> None:
        # Checked against the operation kind's parameter spec when the runbook is saved, not
        # when someone runs the step during an incident.
        super().clean()
        if not self.operation_kind:
            if self.operation_params:
                raise ValidationError(
                    {
                        "operation_params": "A manual step takes no parameters: choose an "
                        "operation kind or leave the parameters empty."
                    }
                )
            return
        try:
            check_stored_params(self.operation_kind, self.operation_params)
        except InvalidParameters as exc:
            field = "operation_kind" if self.operation_kind not in KINDS else "operation_params"
            raise ValidationError({field: str(exc)}) from None


class IncidentStep(models.Model):
    """A runbook step copied into an incident as a checklist item."""

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="steps")
    runbook_step = models.ForeignKey(
        RunbookStep, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    phase = models.CharField(max_length=16, choices=Phase.choices)
    position = models.PositiveSmallIntegerField()
    text = models.CharField(max_length=300)
    operation_kind = models.CharField(max_length=40, blank=True)
    operation_params = models.JSONField(default=dict, blank=True)
    target = models.ForeignKey(
        "systems.System", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    done = models.BooleanField(default=False)
    done_at = models.DateTimeField(null=True, blank=True)
    done_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    note = models.TextField(blank=True)
    last_operation = models.ForeignKey(
        "operations.Operation", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["incident", "position"]

    def __str__(self) -> str:
        return self.text


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


# --- escalation -------------------------------------------------------------------------


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
