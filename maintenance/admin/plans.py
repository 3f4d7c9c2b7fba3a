"""Recurring maintenance plans in the admin: the plan form (rule checked on the form) and
the plan list with its next occurrences; saving a plan generates its windows."""

from __future__ import annotations

import datetime as dt

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.html import format_html_join

from maintenance import services
from maintenance.admin._common import _add_errors, _check_field_bounds, _check_lead_hours
from maintenance.models import MaintenancePlan


class MaintenancePlanForm(forms.ModelForm):
    class Meta:
        model = MaintenancePlan
        fields = [
            "name",
            "kind",
            "rrule",
            "first_start",
            "time_zone",
            "duration_minutes",
            "systems",
            "expected_impact",
            "rollback_plan",
            "owner",
            "emails",
            "webhook",
            "announce_lead_hours",
            "generate_ahead_days",
            "active",
        ]

    def clean(self):
        cleaned = super().clean()
        _check_lead_hours(self, cleaned)
        _check_field_bounds(
            self, cleaned, ["first_start", "duration_minutes", "generate_ahead_days"]
        )
        if not self.errors:
            probe = MaintenancePlan(
                rrule=cleaned.get("rrule", ""),
                first_start=cleaned.get("first_start"),
                time_zone=cleaned.get("time_zone", ""),
                duration_minutes=cleaned.get("duration_minutes") or 0,
                generate_ahead_days=cleaned.get("generate_ahead_days") or 0,
            )
            try:
                services.plan_validate(plan=probe)
            except ValidationError as exc:
                _add_errors(self, exc)
        return cleaned


@admin.register(MaintenancePlan)
class MaintenancePlanAdmin(admin.ModelAdmin):
    form = MaintenancePlanForm
    list_display = [
        "name",
        "kind",
        "rrule",
        "first_start",
        "duration_minutes",
        "active",
        "next_occurrences",
    ]
    filter_horizontal = ["systems"]

    @admin.display(description="Next occurrences (UTC)")
    def next_occurrences(self, obj):
        now = timezone.now()
        try:
            upcoming = services.plan_occurrences(
                plan=obj, start=now, end=now + dt.timedelta(days=400)
            )[:3]
        except ValidationError as exc:
            return " ".join(exc.messages)
        return format_html_join(", ", "{}", ((f"{s:%Y-%m-%d %H:%M}",) for s, _ in upcoming))

    def save_model(self, request, obj, form, change):
        # Saved first; systems follow in save_related, then the windows are generated.
        obj.save()

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        created = services.plan_generate_windows(plan=form.instance)
        if created:
            self.message_user(request, f"Generated {len(created)} upcoming window(s).")
