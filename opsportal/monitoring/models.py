"""Samples of the platform's key metrics, per-system collection schedules, alert rules and
the state of each rule on each system."""

import datetime as dt

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from opsportal.monitoring.catalogue import METRIC_CHOICES, METRICS
from opsportal.systems.models import SystemKind


class Sample(models.Model):
    """One measured value. Kept narrow (about 60 bytes a row): a 30 s interval over 60
    systems and 7 days is a few million rows, read only through the index below.

    On PostgreSQL the table is partitioned by day (migration 0004, opsportal/monitoring/
    partitions.py): its key there is (id, at) while Django knows `id` alone, which the
    sequence keeps unique. A schema change to this model needs a look at the partitions."""

    at = models.DateTimeField()
    system = models.ForeignKey(
        "systems.System",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
        db_index=False,  # covered by the composite index
        help_text="Empty for portal-level figures (backup locations).",
    )
    metric = models.CharField(max_length=48, choices=METRIC_CHOICES)
    subject = models.CharField(
        max_length=160, blank=True, default="", help_text="Container name or filesystem path."
    )
    value = models.FloatField()

    class Meta:
        indexes = [
            models.Index(
                fields=["system", "metric", "subject", "at"], name="monitoring_sample_series"
            ),
            # Retention deletes and downsamples by age.
            models.Index(fields=["at"], name="monitoring_sample_at"),
        ]

    def __str__(self) -> str:
        return f"{self.metric}{{{self.subject}}}={self.value:g} at {self.at:%H:%M:%S}"


class SampleRollup(models.Model):
    """Raw samples older than the retention, averaged into 5-minute buckets."""

    bucket = models.DateTimeField()
    system = models.ForeignKey(
        "systems.System",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
        db_index=False,
    )
    metric = models.CharField(max_length=48, choices=METRIC_CHOICES)
    subject = models.CharField(max_length=160, blank=True, default="")
    mean = models.FloatField()
    minimum = models.FloatField()
    maximum = models.FloatField()
    count = models.PositiveIntegerField()

    class Meta:
        indexes = [
            models.Index(
                fields=["system", "metric", "subject", "bucket"], name="monitoring_rollup_series"
            ),
            models.Index(fields=["bucket"], name="monitoring_rollup_bucket"),
        ]

    def __str__(self) -> str:
        return f"{self.metric}{{{self.subject}}} mean {self.mean:g} at {self.bucket:%Y-%m-%d %H:%M}"


class LatestValue(models.Model):
    """The newest value of every series, so /metrics, the overview and the rules read a
    small table instead of searching days of samples."""

    key = models.CharField(max_length=260, unique=True)  # system id, metric, subject
    system = models.ForeignKey(
        "systems.System", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    metric = models.CharField(max_length=48, choices=METRIC_CHOICES)
    subject = models.CharField(max_length=160, blank=True, default="")
    value = models.FloatField()
    at = models.DateTimeField()

    class Meta:
        ordering = ["system_id", "metric", "subject"]

    def __str__(self) -> str:
        return f"{self.metric}{{{self.subject}}}={self.value:g}"

    @staticmethod
    def key_for(system_id: int | None, metric: str, subject: str) -> str:
        return f"{system_id or 0}|{metric}|{subject}"


def default_interval() -> int:
    return settings.MONITORING_DEFAULT_INTERVAL_SECONDS


class CollectionSchedule(models.Model):
    """How often monitoring samples a system, and the lease that keeps runs from overlapping."""

    system = models.OneToOneField(
        "systems.System", primary_key=True, on_delete=models.CASCADE, related_name="collection"
    )
    enabled = models.BooleanField(default=True)
    interval_seconds = models.PositiveIntegerField(
        default=default_interval, validators=[MinValueValidator(5), MaxValueValidator(86400)]
    )
    next_due_at = models.DateTimeField(null=True, blank=True)
    # Set while a collection of this system runs; a collector that starts late finds the
    # lease held and skips the system instead of piling a second run on top of the first.
    lease_until = models.DateTimeField(null=True, blank=True)
    last_started_at = models.DateTimeField(null=True, blank=True)
    last_finished_at = models.DateTimeField(null=True, blank=True)
    last_ok = models.BooleanField(null=True)
    last_error = models.CharField(max_length=500, blank=True)
    last_duration_ms = models.FloatField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["enabled", "next_due_at"], name="monitoring_sched_due")]

    def __str__(self) -> str:
        return f"Collection from {self.system}"

    def save(self, *args, **kwargs):
        # An interval edited in the admin applies from the last run, not after the next one.
        if self.last_started_at is not None:
            self.next_due_at = self.last_started_at + dt.timedelta(seconds=self.interval_seconds)
        super().save(*args, **kwargs)


class Comparison(models.TextChoices):
    ABOVE = "gt", "above"
    AT_OR_ABOVE = "ge", "at or above"
    BELOW = "lt", "below"
    AT_OR_BELOW = "le", "at or below"
    EQUAL = "eq", "equal to"
    NOT_EQUAL = "ne", "not equal to"


COMPARE = {
    Comparison.ABOVE: lambda v, t: v > t,
    Comparison.AT_OR_ABOVE: lambda v, t: v >= t,
    Comparison.BELOW: lambda v, t: v < t,
    Comparison.AT_OR_BELOW: lambda v, t: v <= t,
    Comparison.EQUAL: lambda v, t: v == t,
    Comparison.NOT_EQUAL: lambda v, t: v != t,
}


class AlertRule(models.Model):
    """A threshold on a collected metric; firing opens one incident with its runbook."""

    name = models.CharField(max_length=120, unique=True)
    enabled = models.BooleanField(default=True)
    metric = models.CharField(max_length=48, choices=METRIC_CHOICES)
    system_kind = models.CharField(
        max_length=16,
        choices=SystemKind.choices,
        blank=True,
        help_text="Only systems of this kind (empty: every system that has the metric).",
    )
    systems = models.ManyToManyField(
        "systems.System",
        blank=True,
        related_name="+",
        help_text="Only these systems (empty: all of them).",
    )
    comparison = models.CharField(
        max_length=2, choices=Comparison.choices, default=Comparison.ABOVE
    )
    threshold = models.FloatField()
    for_seconds = models.PositiveIntegerField(
        "for (seconds)",
        default=0,
        help_text="Fire only when the condition has held this long (0: at the first sample).",
    )
    keep_firing_seconds = models.PositiveIntegerField(
        "keep firing for (seconds)",
        default=300,
        validators=[MaxValueValidator(86400)],
        help_text="Clear only after the condition has been false this long (like Prometheus' "
        "keep_firing_for): a fault that comes back meanwhile, e.g. a crash loop after a "
        "restart, keeps its incident open instead of resolving it and opening a new one "
        "(0: clear at the first sample below the line).",
    )
    severity = models.CharField(max_length=8, default="sev3")
    category = models.CharField(max_length=16, default="other")
    runbook_name = models.CharField(
        max_length=200, blank=True, help_text="The runbook's Common Issue to attach."
    )
    auto_resolve = models.BooleanField(
        default=False, help_text="Resolve the incident when the rule stops firing."
    )
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def condition(self) -> str:
        unit = METRICS[self.metric].unit if self.metric in METRICS else ""
        unit = "" if unit in ("1/0", "") else f" {unit}"
        text = f"{self.metric} {Comparison(self.comparison).label} {self.threshold:g}{unit}"
        text += f" for {self.for_seconds} s" if self.for_seconds else ""
        return text + (
            f", kept firing {self.keep_firing_seconds} s after it clears"
            if self.keep_firing_seconds
            else ""
        )

    def clean(self) -> None:
        if self.metric not in METRICS:
            raise ValidationError({"metric": f"No metric named {self.metric!r} is collected."})
        spec = METRICS[self.metric]
        if self.system_kind and self.system_kind not in spec.kinds:
            raise ValidationError(
                {"system_kind": f"{self.metric} is not collected from {self.system_kind} systems."}
            )


class AlertStatus(models.TextChoices):
    OK = "ok", "OK"
    PENDING = "pending", "Pending"
    FIRING = "firing", "Firing"


class AlertState(models.Model):
    """Where one rule stands on one series (system and subject); the fingerprint makes one
    incident per firing, not one per sample."""

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="states")
    system = models.ForeignKey(
        "systems.System", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    subject = models.CharField(max_length=160, blank=True, default="")
    fingerprint = models.CharField(max_length=128, unique=True)
    status = models.CharField(max_length=8, choices=AlertStatus.choices, default=AlertStatus.OK)
    since = models.DateTimeField(help_text="When the current status began.")
    # Firing, but the condition has been false since then; it clears once that has lasted
    # the rule's keep-firing time.
    clearing_since = models.DateTimeField(null=True, blank=True)
    last_value = models.FloatField(null=True)
    last_evaluated_at = models.DateTimeField()
    evidence = models.JSONField(default=list, blank=True)
    # False while the incidents app has not yet taken the last firing/resolved change;
    # the next evaluation delivers it again.
    delivered = models.BooleanField(default=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    incident_id = models.BigIntegerField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["status"], name="monitoring_alertstate_status")]

    def __str__(self) -> str:
        return f"{self.rule} on {self.system or 'portal'} {self.subject}".strip()
