"""Input rules every API serializer shares: unknown fields are refused (a typo in a field
name must not be silently ignored), and text PostgreSQL cannot store (NUL characters, lone
surrogates) is refused with a 400 instead of failing in the database."""

from __future__ import annotations

from rest_framework import serializers


def text_problem(value) -> str | None:
    if isinstance(value, str):
        if "\x00" in value:
            return "Text may not contain NUL characters."
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "Text must be valid Unicode (no lone surrogates)."
    elif isinstance(value, dict):
        for key, inner in value.items():
            problem = text_problem(key) or text_problem(inner)
            if problem:
                return problem
    elif isinstance(value, list):
        for inner in value:
            problem = text_problem(inner)
            if problem:
                return problem
    return None


class StrictInputMixin:
    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(
                str(k) for k in data if k not in self.fields or self.fields[k].read_only
            )
            if unknown:
                raise serializers.ValidationError(
                    {name: ["Unknown field; this endpoint does not take it."] for name in unknown}
                )
            problems = {str(k): [p] for k, v in data.items() if (p := text_problem(v))}
            if problems:
                raise serializers.ValidationError(problems)
        return super().to_internal_value(data)


class StrictSerializer(StrictInputMixin, serializers.Serializer):
    pass


class StrictModelSerializer(StrictInputMixin, serializers.ModelSerializer):
    pass
