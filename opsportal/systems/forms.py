from django import forms

KEEP_HELP = "Stored encrypted and never shown again. Leave empty to keep the current value."


class SecretsWriteOnlyForm(forms.ModelForm):
    """Secret fields render empty; an empty submission keeps the stored secret."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in self._meta.model.SECRET_FIELDS:
            if name not in self.fields:
                continue
            stored = bool(self.instance.pk and getattr(self.instance, name))
            self.fields[name].widget = forms.PasswordInput(render_value=False)
            self.fields[name].required = False
            self.fields[name].help_text = ("A value is stored. " if stored else "") + KEEP_HELP
            self.fields[f"clear_{name}"] = forms.BooleanField(
                required=False, label=f"Clear the stored {self.fields[name].label.lower()}"
            )

    def clean(self):
        cleaned = super().clean()
        for name in self._meta.model.SECRET_FIELDS:
            if cleaned.get(f"clear_{name}"):
                cleaned[name] = ""
            elif not cleaned.get(name) and self.instance.pk:
                cleaned[name] = getattr(self.instance, name)
        return cleaned
