"""Filters every API list shares."""

from __future__ import annotations

import datetime as dt

import django_filters
from django import forms
from rest_framework.filters import SearchFilter


class UtcDateTimeField(forms.DateTimeField):
    """An ISO 8601 time, converted to UTC: PostgreSQL refuses offsets beyond ±15:59 that
    Python accepts (+19:27), and a time near year 1 or 9999 may not convert at all; both
    are a 400 saying so, not a database error."""

    def to_python(self, value):
        parsed = super().to_python(value)
        if parsed is None:
            return None
        try:
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=dt.UTC)
            return parsed.astimezone(dt.UTC)
        except (OverflowError, ValueError):
            raise forms.ValidationError(
                "This time cannot be expressed in UTC; give one between years 1 and 9999."
            ) from None


class UtcDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UtcDateTimeField


class BoundedSearchFilter(SearchFilter):
    """?search=: each word must match one of the view's search_fields; at most five words
    (a pasted paragraph is not twenty ILIKE scans)."""

    def get_search_terms(self, request):
        return super().get_search_terms(request)[:5]
