from django import forms

from incidents.models import Incident
from incidents.services.runbooks import REASON_FOR_CHANGE
from opsportal.operations.forms import OperationParamsFormMixin
from opsportal.operations.kinds import KINDS
from opsportal.operations.selectors import connection_owners_seen
from opsportal.people.models import Team
from opsportal.systems.models import System


class IncidentOpenForm(forms.ModelForm):
    """The short form a team member opens an incident with."""

    class Meta:
        model = Incident
        fields = ["title", "severity", "category", "team", "symptoms", "affected_systems"]

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        if user is not None and not user.is_superuser:
            self.fields["team"].queryset = Team.objects.filter(members=user)
        self.fields["team"].help_text = "One of your teams; it owns the incident."
        self.fields["affected_systems"].required = False


class StepRunForm(OperationParamsFormMixin, forms.Form):
    """The run page of a runbook step: the system, one typed field per parameter of the
    step's operation (the runbook's values filled in) and, for a change, the reason."""

    target = forms.ModelChoiceField(queryset=System.objects.all(), label="System")
    reason = forms.CharField(
        max_length=500, required=False, widget=forms.TextInput(attrs={"size": 80})
    )

    def __init__(
        self,
        *args,
        kind: str,
        params: dict | None = None,
        targets=None,
        break_glass: bool = False,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        if targets is not None:
            self.fields["target"].queryset = targets
        # Whose connections to end: offered from the summary the runbook's step before it made.
        suggestions = (
            connection_owners_seen(target_id=self.initial.get("target"))
            if kind == "db_terminate_idle"
            else {}
        )
        self.add_param_fields(kind, params, suggestions)
        # The reason last, after the parameters it explains.
        self.fields["reason"] = self.fields.pop("reason")
        self.changing = KINDS[kind].changing
        if self.changing:
            self.fields["reason"].required = True
            self.fields["reason"].help_text = REASON_FOR_CHANGE
        if break_glass:
            # Two-person approval's break-glass (SEV1 only): filled in, it runs without
            # waiting; the Security team is told and the audit record marks it.
            self.fields["break_glass_reason"] = forms.CharField(
                max_length=500,
                required=False,
                label="Break-glass reason",
                widget=forms.TextInput(attrs={"size": 80}),
                help_text="SEV1 only: run now without approval. The Security team is notified.",
            )

    def clean(self) -> dict:
        cleaned = super().clean()
        params = self.clean_operation_params(cleaned)
        if params is not None:
            cleaned["params"] = params
        return cleaned
