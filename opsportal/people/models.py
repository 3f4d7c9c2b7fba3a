"""Teams and contacts (the runbook's "Contact Information"), on-call rotations, and the
notifications sent to them."""

import datetime as dt

from django.conf import settings
from django.contrib.contenttypes.fields import GenericForeignKey
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models

from opsportal.systems.fields import EncryptedTextField


class Responsibility(models.TextChoices):
    """Who to page for what, as the runbook's contact list names them."""

    ON_CALL = "on_call", "On-call engineer"
    SECURITY = "security", "Security team"
    DATABASE = "database", "Database admin"
    DEVOPS = "devops", "DevOps team"


class Team(models.Model):
    name = models.CharField(max_length=100, unique=True)
    responsibility = models.CharField(
        max_length=16,
        choices=Responsibility.choices,
        unique=True,
        null=True,
        blank=True,
        help_text="The runbook role this team answers for; notifications for it go here.",
    )
    email = models.EmailField(blank=True, help_text="The team's shared address.")
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="teams")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Contact(models.Model):
    name = models.CharField(max_length=150)
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="contacts")
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="contact",
    )
    email = models.EmailField(blank=True)
    phone = models.CharField(max_length=40, blank=True)
    pager_email = models.EmailField(
        blank=True, help_text="Email-to-pager/SMS gateway address for pages."
    )
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.team})"


class OnCallRotation(models.Model):
    """Members take turns in order, each for one shift, starting at `handoff_at`."""

    name = models.CharField(max_length=100, unique=True)
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="rotations")
    shift_hours = models.PositiveIntegerField(default=168, validators=[MinValueValidator(1)])
    handoff_at = models.DateTimeField(help_text="When the first member's first shift starts.")
    members = models.ManyToManyField(Contact, through="RotationMember", related_name="+")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def shift(self) -> dt.timedelta:
        return dt.timedelta(hours=self.shift_hours)


class RotationMember(models.Model):
    rotation = models.ForeignKey(
        OnCallRotation, on_delete=models.CASCADE, related_name="memberships"
    )
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="+")
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["rotation", "contact"], name="rotation_member_once")
        ]

    def __str__(self) -> str:
        return f"{self.position}: {self.contact.name}"


class OnCallOverride(models.Model):
    """Someone else covers the rotation for a while (holiday, swap)."""

    rotation = models.ForeignKey(OnCallRotation, on_delete=models.CASCADE, related_name="overrides")
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="+")
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-starts_at"]
        indexes = [models.Index(fields=["rotation", "starts_at", "ends_at"])]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(ends_at__gt=models.F("starts_at")),
                name="override_ends_after_start",
                violation_error_message="An override must end after it starts.",
            )
        ]

    def __str__(self) -> str:
        return f"{self.contact.name} covers {self.rotation} {self.starts_at:%Y-%m-%d %H:%M}"

    def clean(self):
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            raise ValidationError({"ends_at": "An override must end after it starts."})


class WebhookFormat(models.TextChoices):
    SLACK = "slack", "Slack-compatible JSON"
    GENERIC = "generic", "Generic JSON"


class WebhookChannel(models.Model):
    """A chat room or incoming-webhook URL a team is notified in."""

    name = models.CharField(max_length=100, unique=True)
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="webhooks")
    format = models.CharField(
        max_length=16, choices=WebhookFormat.choices, default=WebhookFormat.SLACK
    )
    url = EncryptedTextField(help_text="Stored encrypted: webhook URLs carry their token.")
    active = models.BooleanField(default=True)

    SECRET_FIELDS = ("url",)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class NotificationStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"


class NotificationChannelKind(models.TextChoices):
    EMAIL = "email", "Email"
    WEBHOOK = "webhook", "Webhook"


class Notification(models.Model):
    """One message to one destination, with its delivery outcome."""

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    channel = models.CharField(max_length=16, choices=NotificationChannelKind.choices)
    recipient = models.CharField(
        max_length=254, blank=True, help_text="Email address; empty for a webhook."
    )
    webhook = models.ForeignKey(
        WebhookChannel,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="notifications",
    )
    responsibility = models.CharField(max_length=16, choices=Responsibility.choices, blank=True)
    subject = models.CharField(max_length=255)
    body = models.TextField(blank=True)
    # [{"text": "Acknowledge", "url": "https://…", "style": "primary"}]: shown as buttons in
    # Slack-compatible chat, as a "links" list in generic JSON (email carries them in `body`).
    links = models.JSONField(default=list, blank=True)
    status = models.CharField(
        max_length=16,
        choices=NotificationStatus.choices,
        default=NotificationStatus.PENDING,
        db_index=True,
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    about_type = models.ForeignKey(ContentType, null=True, blank=True, on_delete=models.SET_NULL)
    about_id = models.CharField(max_length=64, blank=True)
    about = GenericForeignKey("about_type", "about_id")

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["about_type", "about_id"]),
            models.Index(fields=["status", "next_attempt_at"]),
        ]
        permissions = [("retry_notification", "Can retry delivery of a failed notification")]

    def __str__(self) -> str:
        return f"{self.subject} → {self.destination}"

    @property
    def destination(self) -> str:
        return (
            self.recipient
            if self.channel == NotificationChannelKind.EMAIL
            else str(self.webhook or "deleted webhook")
        )


def _feed_token() -> str:
    import secrets

    return secrets.token_urlsafe()


class ShiftCalendar(models.Model):
    """A person's secret .ics feed of their own on-call shifts (calendar apps cannot sign
    in, so the link is the credential, like the maintenance calendar's)."""

    contact = models.OneToOneField(Contact, on_delete=models.CASCADE, related_name="shift_calendar")
    token = models.CharField(max_length=64, unique=True, default=_feed_token)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"Shift calendar of {self.contact.name}"
