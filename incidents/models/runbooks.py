"""Runbooks, their steps, and the checklist of an incident following one."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from incidents.models.incident import Category, Incident
from opsportal.operations.fields import HELP as PARAMS_HELP
from opsportal.operations.fields import OperationParamsField
from opsportal.operations.kinds import KINDS, InvalidParameters, check_stored_params


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
