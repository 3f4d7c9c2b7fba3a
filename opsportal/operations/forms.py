"""Operation parameters as typed form fields, built from each kind's declared Param specs
(kinds.py), so a run page asks for a number, a choice or a name, never for JSON."""

from __future__ import annotations

from django import forms
from django.utils.html import escape, format_html, format_html_join

from opsportal.operations.kinds import (
    KINDS,
    MAX_TEXT_LENGTH,
    InvalidParameters,
    Param,
    clean_params,
)

# Form field names carry this prefix so a parameter never collides with the page's own
# fields (the system, the reason).
PREFIX = "param_"


def _label(name: str, param: Param) -> str:
    return param.label or name.replace("_", " ").capitalize()


class SuggestingTextInput(forms.TextInput):
    """A text box that offers `suggestions` (a <datalist>) and still takes anything typed."""

    def __init__(self, suggestions: list[str], attrs: dict | None = None):
        super().__init__(attrs)
        self.suggestions = suggestions

    def render(self, name, value, attrs=None, renderer=None):
        list_id = f"{(attrs or {}).get('id') or name}-suggestions"
        attrs = {**(attrs or {}), "list": list_id}
        options = format_html_join("", '<option value="{}">', ((s,) for s in self.suggestions))
        return format_html(
            '{}<datalist id="{}">{}</datalist>',
            super().render(name, value, attrs, renderer),
            list_id,
            options,
        )


def param_field(
    name: str, param: Param, initial: object = None, suggestions: list[str] | None = None
) -> forms.Field:
    """The form field for one parameter, `initial` (else its default) filled in; a text
    field offers `suggestions` when there are any."""
    value = param.default if initial is None else initial
    common = {"label": _label(name, param), "help_text": param.help, "required": param.required}
    if param.choices:
        field: forms.Field = forms.TypedChoiceField(
            choices=[(str(v), label) for v, label in param.choice_pairs],
            coerce=str,
            **common,
        )
        if value is not None:
            field.initial = str(value)
        return field
    if param.type is bool:
        return forms.BooleanField(
            label=common["label"], help_text=param.help, required=False, initial=bool(value)
        )
    if param.type is int:
        field = forms.IntegerField(min_value=param.minimum, max_value=param.maximum, **common)
    elif param.type is float:
        field = forms.FloatField(min_value=param.minimum, max_value=param.maximum, **common)
        field.widget.attrs["step"] = "any"
    elif param.type is list:
        field = forms.CharField(**common)
        field.help_text = (param.help + " " if param.help else "") + "Separate with spaces."
        if isinstance(value, list):
            value = " ".join(map(str, value))
    else:
        field = forms.CharField(max_length=MAX_TEXT_LENGTH, **common)
        if suggestions:
            field.widget = SuggestingTextInput(suggestions)
            # Django's form templates render help text unescaped; these names come from
            # the target database, so they are escaped here.
            field.help_text += " Seen in the last connection summary: " + escape(
                ", ".join(suggestions)
            )
    field.initial = value
    return field


class OperationParamsFormMixin:
    """Adds one typed field per parameter of `kind` to a form; `operation_params()` gives the
    cleaned parameters (defaults filled in, checked by kinds.clean_params)."""

    def add_param_fields(
        self,
        kind: str,
        initial: dict | None = None,
        suggestions: dict[str, list[str]] | None = None,
    ) -> None:
        self.operation_kind = kind
        initial, suggestions = initial or {}, suggestions or {}
        for name, param in KINDS[kind].params.items():
            self.fields[PREFIX + name] = param_field(
                name, param, initial.get(name), suggestions.get(name)
            )

    def param_field_names(self) -> list[str]:
        return [name for name in self.fields if name.startswith(PREFIX)]

    def clean_operation_params(self, cleaned: dict) -> dict | None:
        """The parameters, or None after adding the error to the field it concerns."""
        raw = {
            name[len(PREFIX) :]: cleaned.get(name)
            for name in self.param_field_names()
            if name in cleaned
        }
        try:
            return clean_params(self.operation_kind, raw)
        except InvalidParameters as exc:
            field = PREFIX + exc.param if exc.param and PREFIX + exc.param in self.fields else None
            self.add_error(field, str(exc))
            return None
