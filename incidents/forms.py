import json

from django import forms

from incidents.models import Incident
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


class StepRunForm(forms.Form):
    target = forms.ModelChoiceField(queryset=System.objects.all(), label="System")
    params = forms.CharField(
        label="Parameters (JSON)",
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        required=False,
        initial="{}",
    )
    reason = forms.CharField(
        max_length=500, required=False, widget=forms.TextInput(attrs={"size": 80})
    )

    def __init__(self, *args, changing: bool = False, targets=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.changing = changing
        if targets is not None:
            self.fields["target"].queryset = targets
        if changing:
            self.fields["reason"].required = True
            self.fields["reason"].help_text = "This operation changes the system: say why."

    def clean_params(self) -> dict:
        text = (self.cleaned_data.get("params") or "").strip() or "{}"
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc.msg} (line {exc.lineno}).") from exc
        if not isinstance(value, dict):
            raise forms.ValidationError('Give the parameters as an object, e.g. {"lines": 200}.')
        return value
