from django import forms
from django.db import models
from django.utils.text import get_text_list

from opsportal.systems.fields import secret_field_names

KEEP_HELP = "Stored encrypted and never shown again. Leave empty to keep the current value."


def repointing_help(model: type[models.Model]) -> str:
    """What the form says about re-pointing a system whose secret is stored."""
    connection = getattr(model, "connection_fields", None)
    if connection is None:
        return ""
    names = [str(f.verbose_name) for f in connection()]
    return (
        f" Changing the {get_text_list(names, 'or')} drops it unless you enter it again "
        "in the same save."
    )


class WriteOnlyTextarea(forms.Textarea):
    """A text area that is always rendered empty, for multi-line secrets (PEM keys)."""

    def __init__(self, attrs=None):
        super().__init__({"rows": 4, "autocomplete": "off", "spellcheck": "false", **(attrs or {})})

    def format_value(self, value):
        return None


class SecretsWriteOnlyForm(forms.ModelForm):
    """Secret fields render empty; an empty submission keeps the stored secret.

    Keeping means not assigning: the stored value is never put back into the instance,
    so the model can tell a secret entered again from one carried over (a system that
    is re-pointed keeps only secrets entered again). Use `secrets_form_for(model)` to
    also get a "clear the stored secret" checkbox.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        model = self._meta.model
        for name in secret_field_names(model):
            if name not in self.fields:
                continue
            # Not even as the form's initial value: nothing here may render it or
            # compare against it.
            self.initial.pop(name, None)
            stored = bool(self.instance.pk and getattr(self.instance, name))
            multiline = getattr(model._meta.get_field(name), "multiline", False)
            self.fields[name].widget = (
                WriteOnlyTextarea() if multiline else forms.PasswordInput(render_value=False)
            )
            self.fields[name].required = (
                not stored
                and not self.fields[name].widget.is_hidden
                and not model._meta.get_field(name).blank
            )
            self.fields[name].help_text = (
                ("A value is stored. " if stored else "")
                + KEEP_HELP
                + (repointing_help(model) if stored else "")
            )

    def clean(self):
        cleaned = super().clean()
        for name in secret_field_names(self._meta.model):
            if cleaned.get(f"clear_{name}"):
                cleaned[name] = ""
            elif not cleaned.get(name) and self.instance.pk:
                cleaned.pop(name, None)  # keep what is stored, untouched
            elif cleaned.get(name) and isinstance(self.fields[name].widget, WriteOnlyTextarea):
                # Browsers submit a text area's line breaks as CRLF; store PEM's own LF.
                cleaned[name] = cleaned[name].replace("\r\n", "\n")
        return cleaned


def secrets_form_for(model: type[models.Model]) -> type[SecretsWriteOnlyForm]:
    """A write-only-secrets form for `model` with a "clear" checkbox per secret field."""
    declared = {
        f"clear_{name}": forms.BooleanField(
            required=False, label=f"Clear the stored {model._meta.get_field(name).verbose_name}"
        )
        for name in secret_field_names(model)
    }
    meta = type("Meta", (), {"model": model, "fields": "__all__"})
    return type(f"{model.__name__}SecretsForm", (SecretsWriteOnlyForm,), {**declared, "Meta": meta})
