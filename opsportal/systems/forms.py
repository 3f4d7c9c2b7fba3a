from django import forms
from django.db import models

KEEP_HELP = "Stored encrypted and never shown again. Leave empty to keep the current value."


class SecretsWriteOnlyForm(forms.ModelForm):
    """Secret fields render empty; an empty submission keeps the stored secret.

    Use `secrets_form_for(model)` to also get a "clear the stored secret" checkbox.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in self._meta.model.SECRET_FIELDS:
            if name not in self.fields:
                continue
            stored = bool(self.instance.pk and getattr(self.instance, name))
            self.fields[name].widget = forms.PasswordInput(render_value=False)
            self.fields[name].required = (
                not stored
                and not self.fields[name].widget.is_hidden
                and not self._meta.model._meta.get_field(name).blank
            )
            self.fields[name].help_text = ("A value is stored. " if stored else "") + KEEP_HELP

    def clean(self):
        cleaned = super().clean()
        for name in self._meta.model.SECRET_FIELDS:
            if cleaned.get(f"clear_{name}"):
                cleaned[name] = ""
            elif not cleaned.get(name) and self.instance.pk:
                cleaned[name] = getattr(self.instance, name)
        return cleaned


def secrets_form_for(model: type[models.Model]) -> type[SecretsWriteOnlyForm]:
    """A write-only-secrets form for `model` with a "clear" checkbox per secret field."""
    declared = {
        f"clear_{name}": forms.BooleanField(
            required=False, label=f"Clear the stored {model._meta.get_field(name).verbose_name}"
        )
        for name in model.SECRET_FIELDS
    }
    meta = type("Meta", (), {"model": model, "fields": "__all__"})
    return type(f"{model.__name__}SecretsForm", (SecretsWriteOnlyForm,), {**declared, "Meta": meta})
