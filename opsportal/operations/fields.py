"""Stored operation parameters (a runbook step's), as a JSON field whose form answers every
input with a form error (issue #17): empty is {}, not NULL (an IntegrityError before); NaN,
Infinity, a lone surrogate or NUL, which PostgreSQL's jsonb refuses, are refused on the form;
nesting that overflowed the decoder, and more than MAX_PARAMS_JSON characters, too."""

from __future__ import annotations

import json

from django import forms
from django.core.exceptions import ValidationError
from django.db import models

MAX_PARAMS_JSON = 4000
HELP = (
    'A JSON object of the operation\'s parameters, e.g. {"lines": 200}; empty for none. '
    f"At most {MAX_PARAMS_JSON:,} characters."
)


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


class OperationParamsFormField(forms.JSONField):
    default_error_messages = {"invalid": 'Enter a JSON object, e.g. {"lines": 200}.'}

    def to_python(self, value):
        if self.disabled:
            return value
        if value in self.empty_values:
            return {}
        if isinstance(value, str):
            if len(value) > MAX_PARAMS_JSON:
                raise ValidationError(f"At most {MAX_PARAMS_JSON:,} characters of JSON.")
            try:
                value = json.loads(value, parse_constant=_refuse_constant)
            except RecursionError:
                raise ValidationError("The JSON is nested too deeply.") from None
            except ValueError:
                raise ValidationError(self.error_messages["invalid"], code="invalid") from None
        if not isinstance(value, dict):
            raise ValidationError("Enter a JSON object (name: value pairs), or leave it empty.")
        try:
            text = json.dumps(value, ensure_ascii=False, allow_nan=False)
            text.encode("utf-8")
        except (ValueError, UnicodeEncodeError, RecursionError):
            raise ValidationError(
                "Use finite numbers and plain text (no NaN, Infinity or broken characters)."
            ) from None
        if "\\u0000" in text:
            raise ValidationError("The parameters contain a NUL character.")
        return value

    def bound_data(self, data, initial):
        # Redisplayed as typed unless it is JSON that can be shown again: a lone surrogate
        # ("\ud800") decodes but cannot be written into the page as UTF-8.
        if self.disabled:
            return initial
        if data is None:
            return None
        try:
            value = json.loads(data, cls=self.decoder)
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except (ValueError, TypeError, RecursionError, UnicodeEncodeError):
            return forms.fields.InvalidJSONInput(data)
        return value

    def has_changed(self, initial, data):
        # The hidden initial value comes from the request too, and may be just as hostile.
        try:
            return super().has_changed(initial, data)
        except (RecursionError, ValueError):
            return True


class OperationParamsField(models.JSONField):
    def formfield(self, **kwargs):
        return super().formfield(**{"form_class": OperationParamsFormField, **kwargs})
