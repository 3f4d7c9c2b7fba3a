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
