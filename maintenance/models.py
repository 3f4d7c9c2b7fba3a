"""The runbook's "Maintenance Windows" and "Regular Security Tasks".

A MaintenancePlan is a recurring rule (RFC 5545 RRULE, e.g. the third Saturday of every
month 02:00-04:00 UTC) that generates MaintenanceWindow rows ahead of time. A window carries
its procedure as ChecklistSteps (pre / during / post), its change log, the announcements sent
about it, and while it is in progress it suppresses alerts about its affected systems.

A RecurringTask (weekly security scan, monthly dependency updates, ...) generates
TaskOccurrences with due dates, completed by people with notes and evidence.
"""

from __future__ import annotations

import secrets

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q

from opsportal.validators import (
    DATETIME_RANGE_HELP,
    NOTE_MAX_LENGTH,
    REASON_MAX_LENGTH,
    plausible_datetime,
)

# Bounds of what one plan or task may ask for (issue #17): each is stated in its field's
# help text. A plan generates at most MAX_WINDOWS_AT_ONCE windows (with their checklists) in
# one go and a task at most MAX_OCCURRENCES_AT_ONCE due dates; the rest come with later ticks.
MAX_GENERATE_AHEAD_DAYS = 400
MAX_WINDOWS_AT_ONCE = 100
MAX_OCCURRENCES_AT_ONCE = 400
MAX_DURATION_MINUTES = 7 * 24 * 60
TEXT_MAX_LENGTH = NOTE_MAX_LENGTH


class WindowKind(models.TextChoices):
    MONTHLY = "monthly", "Monthly maintenance"
    QUARTERLY_SECURITY = "quarterly_security", "Quarterly security updates and patches"
    ANNUAL_UPGRADE = "annual_upgrade", "Annual major version upgrade"
    AD_HOC = "ad_hoc", "Ad hoc"
    EMERGENCY = "emergency", "Emergency"


class WindowStatus(models.TextChoices):
    PLANNED = "planned", "Planned"
    ANNOUNCED = "announced", "Announced"
    IN_PROGRESS = "in_progress", "In progress"
    COMPLETED = "completed", "Completed"
    ROLLED_BACK = "rolled_back", "Rolled back"
    CANCELLED = "cancelled", "Cancelled"


UPCOMING_STATUSES = (WindowStatus.PLANNED, WindowStatus.ANNOUNCED)
FINISHED_STATUSES = (WindowStatus.COMPLETED, WindowStatus.ROLLED_BACK, WindowStatus.CANCELLED)


class Audience(models.Model):
    """Who a window is announced to, besides the DevOps team: an email list and/or a
    webhook (a chat room of the users affected)."""

    emails = models.TextField(
        blank=True, help_text="Addresses to announce to, one per line or comma-separated."
    )
    webhook = models.ForeignKey(
        "people.WebhookChannel",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="A chat webhook the announcement is also posted to.",
    )
    announce_lead_hours = models.CharField(
        max_length=100,
        default="72,24",
        help_text="Hours before the start at which to announce, comma-separated.",
    )

    class Meta:
        abstract = True

    @property
    def email_list(self) -> list[str]:
        parts = self.emails.replace(",", "\n").split()
        return list(dict.fromkeys(p.strip() for p in parts if p.strip()))

    @property
    def lead_hours(self) -> list[int]:
        return sorted(
            {int(h) for h in self.announce_lead_hours.replace(" ", "").split(",") if h},
            reverse=True,
        )


class MaintenancePlan(Audience):
    """A recurring maintenance window, as an RFC 5545 recurrence rule."""

    name = models.CharField(max_length=120, unique=True)
    kind = models.CharField(max_length=24, choices=WindowKind.choices, default=WindowKind.MONTHLY)
    rrule = models.CharField(
        "recurrence rule",
        max_length=500,
        help_text="RFC 5545 RRULE, e.g. FREQ=MONTHLY;BYDAY=SA;BYSETPOS=3 (the third Saturday).",
    )
    first_start = models.DateTimeField(
        help_text="The first occurrence's start; its time of day is every occurrence's. "
        + DATETIME_RANGE_HELP,
        validators=[plausible_datetime],
    )
    time_zone = models.CharField(
        max_length=64,
        default="UTC",
        help_text="The zone the rule is read in (IANA name, e.g. UTC or Europe/Paris).",
    )
    duration_minutes = models.PositiveIntegerField(
        default=120,
        # At least one minute is checked with the rule, which says so in its own words.
        validators=[MaxValueValidator(MAX_DURATION_MINUTES)],
        help_text=f"How long each window lasts: 1 to {MAX_DURATION_MINUTES} minutes (7 days).",
    )
    systems = models.ManyToManyField("systems.System", blank=True, related_name="+")
    expected_impact = models.TextField(
        blank=True,
        max_length=TEXT_MAX_LENGTH,
        help_text=f"At most {TEXT_MAX_LENGTH:,} characters.",
    )
    rollback_plan = models.TextField(
        blank=True,
        max_length=TEXT_MAX_LENGTH,
        help_text=f"At most {TEXT_MAX_LENGTH:,} characters.",
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    generate_ahead_days = models.PositiveIntegerField(
        default=183,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_GENERATE_AHEAD_DAYS)],
        help_text="How far ahead upcoming windows are generated (183 = about 6 months): "
        f"1 to {MAX_GENERATE_AHEAD_DAYS} days, and at most {MAX_WINDOWS_AT_ONCE} windows in "
        "that time (a rule that gives more is refused: shorten the look-ahead).",
    )
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class MaintenanceWindow(Audience):
    title = models.CharField(max_length=200)
    kind = models.CharField(max_length=24, choices=WindowKind.choices, default=WindowKind.AD_HOC)
    plan = models.ForeignKey(
        MaintenancePlan, null=True, blank=True, on_delete=models.SET_NULL, related_name="windows"
    )
    occurrence_start = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="The start the plan's rule gave; kept when the window is moved or skipped, "
        "so regenerating never recreates it.",
    )
    starts_at = models.DateTimeField(
        help_text="Stored in UTC. " + DATETIME_RANGE_HELP, validators=[plausible_datetime]
    )
    ends_at = models.DateTimeField(
        help_text="Stored in UTC. " + DATETIME_RANGE_HELP, validators=[plausible_datetime]
    )
    systems = models.ManyToManyField(
        "systems.System", blank=True, related_name="maintenance_windows"
    )
    expected_impact = models.TextField(
        blank=True,
        max_length=TEXT_MAX_LENGTH,
        help_text=f"At most {TEXT_MAX_LENGTH:,} characters.",
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    rollback_plan = models.TextField(
        blank=True,
        max_length=TEXT_MAX_LENGTH,
        help_text=f"At most {TEXT_MAX_LENGTH:,} characters.",
    )
    status = models.CharField(
        max_length=16, choices=WindowStatus.choices, default=WindowStatus.PLANNED, db_index=True
    )
    started_at = models.DateTimeField(null=True, blank=True, editable=False)
    finished_at = models.DateTimeField(null=True, blank=True, editable=False)
    start_override_reason = models.TextField(
        blank=True, editable=False, max_length=REASON_MAX_LENGTH
    )
    # The iCalendar SEQUENCE (RFC 5545 3.8.7.4): bumped when the window is moved or
    # cancelled, so subscribed calendar apps take the new version instead of the old one.
    sequence = models.PositiveIntegerField(default=0, editable=False)
    # While these are set, alerts about the window's systems in [from, until) are suppressed;
    # kept apart from status so "which systems are in maintenance now" is one indexed range.
    suppress_from = models.DateTimeField(null=True, blank=True, editable=False)
    suppress_until = models.DateTimeField(null=True, blank=True, editable=False)
    # When the alerts it suppressed and that were still firing at its end were handed to
    # incident handling (once: at completion, or by the tick when the planned end passes).
    alerts_released_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    # The public status page: only windows marked public appear there, with these fields
    # (never the internal title, systems, impact notes or rollback plan).
    public = models.BooleanField(
        "show on the status page",
        default=False,
        help_text="Show on the public status page and announce to its email subscribers.",
    )
    public_title = models.CharField(
        max_length=200, blank=True, help_text="Shown publicly (empty: “Scheduled maintenance”)."
    )
    public_impact = models.TextField(
        blank=True, help_text="What the platform's users will notice. Shown publicly."
    )
    public_components = models.ManyToManyField(
        "statuspage.Component",
        blank=True,
        related_name="+",
        verbose_name="affected components",
        help_text="The status page components under maintenance while the window runs.",
    )

    class Meta:
        ordering = ["starts_at"]
        permissions = [
            ("conduct_maintenancewindow", "Can start, complete and run the checklist of a window"),
        ]
        indexes = [
            models.Index(fields=["starts_at"]),
            models.Index(
                fields=["suppress_until", "suppress_from"],
                name="maint_window_suppressing",
                condition=Q(suppress_from__isnull=False),
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(ends_at__gt=F("starts_at")),
                name="maintenance_window_ends_after_start",
                violation_error_message="A window must end after it starts.",
            ),
            models.UniqueConstraint(
                fields=["plan", "occurrence_start"], name="maintenance_window_occurrence_once"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.title} ({self.starts_at:%Y-%m-%d %H:%M} UTC)"

    @property
    def duration(self):
        return self.ends_at - self.starts_at


class Phase(models.TextChoices):
    PRE = "pre", "Pre-maintenance"
    DURING = "during", "During maintenance"
    POST = "post", "Post-maintenance"


class StepAction(models.TextChoices):
    MANUAL = "", "Done by a person"
    NOTIFY_USERS = "notify_users", "Send the announcement"
    BACKUP_SYSTEMS = "backup_systems", "Back up the affected databases"
    VERIFY_HEALTH = "verify_health", "Run the health checks and the API probe"
    NOTIFY_COMPLETION = "notify_completion", "Announce completion"


class StepStatus(models.TextChoices):
    PENDING = "pending", "To do"
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    WAITING = "waiting", "Waiting for backups"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"
    SKIPPED = "skipped", "Skipped"


class ChecklistStep(models.Model):
    window = models.ForeignKey(MaintenanceWindow, on_delete=models.CASCADE, related_name="steps")
    phase = models.CharField(max_length=8, choices=Phase.choices)
    position = models.PositiveSmallIntegerField(default=0)
    title = models.CharField(max_length=200)
    action = models.CharField(max_length=24, choices=StepAction.choices, blank=True, default="")
    status = models.CharField(
        max_length=16, choices=StepStatus.choices, default=StepStatus.PENDING, db_index=True
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    completed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    result = models.TextField(blank=True)
    backup_ids = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["window", "position"]
        indexes = [models.Index(fields=["status", "queued_at"])]

    def __str__(self) -> str:
        return f"{self.get_phase_display()}: {self.title}"

    @property
    def automatic(self) -> bool:
        return bool(self.action)

    @property
    def finished(self) -> bool:
        return self.status in (StepStatus.DONE, StepStatus.SKIPPED)


class ChangeLogEntry(models.Model):
    """ "Document changes": what was done during the window, as it was done."""

    window = models.ForeignKey(
        MaintenanceWindow, on_delete=models.CASCADE, related_name="change_log"
    )
    at = models.DateTimeField(auto_now_add=True)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    text = models.TextField(max_length=NOTE_MAX_LENGTH)

    class Meta:
        ordering = ["at", "id"]
        verbose_name_plural = "change log entries"

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.text[:60]}"


class AnnouncementKind(models.TextChoices):
    LEAD = "lead", "Ahead of the window"
    START = "start", "Window started"
    COMPLETION = "completion", "Window finished"
    CANCELLATION = "cancellation", "Window cancelled"


class Announcement(models.Model):
    """One announcement sent about a window (the runbook's "Notify users")."""

    window = models.ForeignKey(
        MaintenanceWindow, on_delete=models.CASCADE, related_name="announcements"
    )
    kind = models.CharField(max_length=16, choices=AnnouncementKind.choices)
    lead_hours = models.PositiveIntegerField(default=0)
    sent_at = models.DateTimeField(auto_now_add=True)
    subject = models.CharField(max_length=255)
    recipients = models.TextField(blank=True)
    notification_ids = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["sent_at", "id"]
        constraints = [
            # At most one of each: the periodic task may run twice without sending twice.
            models.UniqueConstraint(
                fields=["window", "kind", "lead_hours"], name="maintenance_announcement_once"
            )
        ]

    def __str__(self) -> str:
        return self.subject


class CalendarSubscription(models.Model):
    """A person's secret .ics feed link and the time zone windows are shown to them in."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="maintenance_calendar"
    )
    token = models.CharField(max_length=64, unique=True, default=secrets.token_urlsafe)
    time_zone = models.CharField(max_length=64, default="UTC")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"Calendar of {self.user}"


class TaskKind(models.TextChoices):
    SECURITY_SCAN = "security_scan", "Weekly security scan"
    DEPENDENCY_UPDATES = "dependency_updates", "Monthly dependency updates"
    PENETRATION_TEST = "penetration_test", "Quarterly penetration testing"
    SECURITY_AUDIT = "security_audit", "Annual security audit"
    OTHER = "other", "Other"


class RecurringTask(models.Model):
    """One of the runbook's "Regular Security Tasks", owned by a team."""

    name = models.CharField(max_length=120, unique=True)
    kind = models.CharField(max_length=24, choices=TaskKind.choices, default=TaskKind.OTHER)
    team = models.ForeignKey("people.Team", on_delete=models.PROTECT, related_name="+")
    rrule = models.CharField("recurrence rule", max_length=500)
    first_due = models.DateTimeField(validators=[plausible_datetime], help_text=DATETIME_RANGE_HELP)
    time_zone = models.CharField(
        max_length=64, default="UTC", help_text="An IANA name, e.g. UTC or Europe/Paris."
    )
    description = models.TextField(
        blank=True,
        max_length=TEXT_MAX_LENGTH,
        help_text=f"At most {TEXT_MAX_LENGTH:,} characters.",
    )
    generate_ahead_days = models.PositiveIntegerField(
        default=90,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_GENERATE_AHEAD_DAYS)],
        help_text=f"How far ahead due dates are generated: 1 to {MAX_GENERATE_AHEAD_DAYS} days, "
        f"and at most {MAX_OCCURRENCES_AT_ONCE} due dates in that time.",
    )
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class OccurrenceStatus(models.TextChoices):
    OPEN = "open", "Open"
    DONE = "done", "Done"
    SKIPPED = "skipped", "Skipped"


class ScanStatus(models.TextChoices):
    NONE = "", "No automatic part"
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    FINISHED = "finished", "Finished"
    FAILED = "failed", "Failed"


class TaskOccurrence(models.Model):
    task = models.ForeignKey(RecurringTask, on_delete=models.CASCADE, related_name="occurrences")
    due_at = models.DateTimeField()
    status = models.CharField(
        max_length=8, choices=OccurrenceStatus.choices, default=OccurrenceStatus.OPEN
    )
    completed_at = models.DateTimeField(null=True, blank=True, editable=False)
    completed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    notes = models.TextField(
        blank=True, max_length=NOTE_MAX_LENGTH, help_text=f"At most {NOTE_MAX_LENGTH:,} characters."
    )
    evidence = models.FileField(upload_to="maintenance/evidence/%Y/%m/", blank=True)
    reminded_at = models.DateTimeField(null=True, blank=True, editable=False)
    # The automatic part of the weekly scan (deployment checks, known-vulnerabilities audit).
    scan_status = models.CharField(
        max_length=8, choices=ScanStatus.choices, blank=True, default=ScanStatus.NONE
    )
    scan_queued_at = models.DateTimeField(null=True, blank=True, editable=False)
    scan_started_at = models.DateTimeField(null=True, blank=True, editable=False)
    findings = models.JSONField(default=dict, blank=True, editable=False)

    class Meta:
        ordering = ["due_at"]
        permissions = [("complete_taskoccurrence", "Can record a recurring task as done")]
        indexes = [models.Index(fields=["status", "due_at"])]
        constraints = [
            models.UniqueConstraint(fields=["task", "due_at"], name="task_occurrence_once")
        ]

    def __str__(self) -> str:
        return f"{self.task} due {self.due_at:%Y-%m-%d}"
