"""URL converters for primary keys in custom admin and portal URLs (issue #17).

`<id:pk>` matches 1 to 18 ASCII digits, so every match is a valid BigAutoField value
(below 2**63): "abc", "²" or a 30-digit id do not match the route at all and answer 404,
instead of reaching a query that cannot convert them (ValueError, OverflowError)."""

from __future__ import annotations

import re

from django.http import Http404
from django.urls import register_converter


class PrimaryKeyConverter:
    regex = "[0-9]{1,18}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value) -> str:
        return str(int(value))


def converters_register() -> None:
    register_converter(PrimaryKeyConverter, "id")


def id_or_404(value: object) -> int:
    """`value` (a URL part or a form value) as a primary key, or 404 when it cannot be one:
    for the views that take an id where no converter reaches (the admin's own
    `<path:object_id>` routes, a posted choice)."""
    text = str(value)
    if not re.fullmatch(PrimaryKeyConverter.regex, text):
        raise Http404("No such object.")
    return int(text)


def bounded_model_choices_install() -> None:
    """Multiple-choice fields of integer keys refuse an id of more than 18 digits as "not a
    valid value" before querying: Django checks them with `pk__in`, which on SQLite (the
    try-out's database) raises OverflowError for an id above 2**63 (a 500; issue #17). One
    patch here covers every form (admin, inlines, the incident form) instead of a form class
    per many-to-many field; the single-choice field needs none (its exact lookup is safe)."""
    from django.core.exceptions import ValidationError
    from django.forms.models import ModelMultipleChoiceField

    if getattr(ModelMultipleChoiceField, "_bounded_ids", False):
        return
    original = ModelMultipleChoiceField._check_values

    def _check_values(self, value):
        key = self.to_field_name or "pk"
        opts = self.queryset.model._meta
        field = opts.pk if key == "pk" else opts.get_field(key)
        if field.get_internal_type() in INTEGER_KEYS:
            for pk in value or ():
                digits = str(pk).strip().lstrip("+-")
                if digits.isdigit() and len(digits) > 18:
                    raise ValidationError(
                        self.error_messages["invalid_pk_value"],
                        code="invalid_pk_value",
                        params={"pk": str(pk)[:30]},
                    )
        return original(self, value)

    ModelMultipleChoiceField._check_values = _check_values
    ModelMultipleChoiceField._bounded_ids = True


INTEGER_KEYS = {
    "AutoField",
    "BigAutoField",
    "SmallAutoField",
    "IntegerField",
    "BigIntegerField",
    "PositiveIntegerField",
}
