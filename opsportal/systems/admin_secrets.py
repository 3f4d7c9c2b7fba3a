"""Secrets in the admin: never rendered, not even read-only.

Editors get the write-only field of `SecretsWriteOnlyForm`. Wherever the admin would
show a secret field's value instead (a page the user may only view, a read-only field,
a changelist column) it shows whether a secret is stored: "set" or "not set". Every
ModelAdmin and inline of a model with secret fields uses `SecretFieldsAdminMixin`
(tests/systems/test_secret_display.py checks that for every registered admin).
"""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib import admin

from opsportal.systems.fields import SecretDecryptionError, secret_field_names

SET, NOT_SET = "set", "not set"


def secret_state_name(field_name: str) -> str:
    """The admin attribute that shows whether `field_name` holds a secret."""
    return f"{field_name}_is_set"


def secret_state(obj, field_name: str) -> str:
    try:
        return SET if getattr(obj, field_name, "") else NOT_SET
    except SecretDecryptionError:
        return "set, but it cannot be decrypted (re-enter it)"


class SecretFieldsAdminMixin:
    """For ModelAdmin and InlineModelAdmin: secret fields shown as "set" / "not set"
    wherever they would be rendered read-only, and never as a column."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in secret_field_names(self.model):
            label = self.model._meta.get_field(name).verbose_name

            def state(obj, name=name):
                return secret_state(obj, name)

            setattr(self, secret_state_name(name), admin.display(description=label)(state))

    def _secrets_shown_as_state(self, request, obj) -> set[str]:
        secrets = set(secret_field_names(self.model))
        if not secrets:
            return set()
        # Django renders every field of a page read-only when the user may only view it
        # (for an inline: when they may not change the parent's rows of this model).
        if obj is not None and not self.has_change_permission(request, obj):
            return secrets
        return secrets & set(super().get_readonly_fields(request, obj))

    def get_readonly_fields(self, request, obj=None):
        shown_as_state = self._secrets_shown_as_state(request, obj)
        secrets = set(secret_field_names(self.model))
        fields = [
            secret_state_name(f) if f in secrets else f
            for f in super().get_readonly_fields(request, obj)
        ]
        return _unique([*fields, *(secret_state_name(n) for n in sorted(shown_as_state))])

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        shown_as_state = self._secrets_shown_as_state(request, obj)
        if not shown_as_state:
            return fieldsets
        seen: set = set()
        return [
            (title, {**options, "fields": _replaced(options["fields"], shown_as_state, seen)})
            for title, options in fieldsets
        ]

    def get_list_display(self, request):
        secrets = set(secret_field_names(self.model))
        return [
            secret_state_name(f) if isinstance(f, str) and f in secrets else f
            for f in super().get_list_display(request)
        ]


def _replaced(fields: Iterable, secrets: set[str], seen: set) -> list:
    """`fields` (names, or tuples of names on one line) with each secret replaced by its
    state, its "clear" checkbox left out, and nothing shown twice."""
    result = []
    for item in fields:
        if isinstance(item, list | tuple):
            line = _replaced(item, secrets, seen)
            if line:
                result.append(tuple(line))
            continue
        if isinstance(item, str):
            if item.startswith("clear_") and item.removeprefix("clear_") in secrets:
                continue
            if item in secrets:
                item = secret_state_name(item)
        if item in seen:
            continue
        seen.add(item)
        result.append(item)
    return result


def _unique(items: list) -> list:
    return list(dict.fromkeys(items))
