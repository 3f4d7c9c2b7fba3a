"""Recurring security tasks and their occurrences in the admin: the task form, recording
an occurrence as done (notes, evidence) and requesting its security scan."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html_join

from maintenance import services
from maintenance.admin._common import _add_errors, _check_field_bounds
from maintenance.models import RecurringTask, TaskOccurrence
from opsportal.admin_mixins import message_refusal
from opsportal.refusals import ServiceRefused


class RecurringTaskForm(forms.ModelForm):
    class Meta:
        model = RecurringTask
        fields = [
            "name",
            "kind",
            "team",
            "rrule",
            "first_due",
            "time_zone",
            "description",
            "generate_ahead_days",
            "active",
        ]

    def clean(self):
        # An impossible rule or an unknown zone is a form error next to its field, so the
        # person fixes it on the same page (saving it would fail on every generation).
        cleaned = super().clean()
        _check_field_bounds(self, cleaned, ["first_due", "generate_ahead_days"])
        if not self.errors:
            probe = RecurringTask(
                rrule=cleaned.get("rrule", ""),
                first_due=cleaned.get("first_due"),
                time_zone=cleaned.get("time_zone", ""),
                generate_ahead_days=cleaned.get("generate_ahead_days") or 0,
            )
            try:
                services.task_validate(task=probe)
            except ValidationError as exc:
                _add_errors(self, exc)
        return cleaned


@admin.register(RecurringTask)
class RecurringTaskAdmin(admin.ModelAdmin):
    form = RecurringTaskForm
    list_display = ["name", "kind", "team", "rrule", "active"]
    list_select_related = ["team"]

    def save_model(self, request, obj, form, change):
        # Validated by the form; saved, then its due dates are generated ahead.
        super().save_model(request, obj, form, change)
        created = services.task_generate_occurrences(task=obj)
        if created:
            self.message_user(request, f"Generated {len(created)} due date(s).")


class OccurrenceCompleteForm(forms.ModelForm):
    """Saving an occurrence's page records it as done: only the completion fields."""

    class Meta:
        model = TaskOccurrence
        fields = ["notes", "evidence"]

    def clean(self):
        # "Add notes or evidence" and "already done" are said on the form, before anything is
        # saved; the service checks again under its lock.
        cleaned = super().clean()
        _check_field_bounds(self, cleaned, ["first_due", "generate_ahead_days"])
        if not self.errors:
            try:
                services.occurrence_complete_check(
                    occurrence=self.instance,
                    notes=cleaned.get("notes", ""),
                    evidence=cleaned.get("evidence") or None,
                )
            except ServiceRefused as refusal:
                self.add_error(None, refusal.message)
        return cleaned


@admin.register(TaskOccurrence)
class TaskOccurrenceAdmin(admin.ModelAdmin):
    form = OccurrenceCompleteForm
    change_form_template = "admin/maintenance/taskoccurrence/change_form.html"
    list_display = ["task", "due_at", "status", "overdue", "completed_by", "scan_status"]
    list_filter = ["status", "task"]
    list_select_related = ["task", "completed_by"]
    show_full_result_count = False
    readonly_fields = [
        "task",
        "due_at",
        "status",
        "completed_at",
        "completed_by",
        "scan_status",
        "findings_summary",
    ]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        # Saving the page only records the occurrence as done (the form has nothing else),
        # so it needs what recording needs: complete_taskoccurrence, which the Security team
        # holds, and not the generic change_taskoccurrence, which no role holds.
        return request.user.has_perm(services.COMPLETE_OCCURRENCE)

    @admin.display(boolean=True)
    def overdue(self, obj):
        return obj.status == "open" and obj.due_at < timezone.now()

    @admin.display(description="Automatic findings")
    def findings_summary(self, obj):
        parts = [
            (name.replace("_", " "), part.get("status", ""), part.get("summary", ""))
            for name, part in (obj.findings or {}).items()
            if isinstance(part, dict)
        ]
        if obj.findings.get("error"):
            parts.append(("error", "failed", obj.findings["error"]))
        return format_html_join("", "<p><b>{}</b>: {} — {}</p>", parts) or "—"

    def save_model(self, request, obj, form, change):
        try:
            services.occurrence_complete(
                occurrence=obj,
                actor=request.user,
                notes=form.cleaned_data.get("notes", ""),
                evidence=form.cleaned_data.get("evidence") or None,
            )
        except ServiceRefused as refusal:
            # The form checked this already: someone recorded it in between. Say so on the
            # page instead of "changed successfully" (response_change).
            message_refusal(self, request, refusal)
            request.occurrence_completion_refused = True

    def log_change(self, request, obj, message):
        if getattr(request, "occurrence_completion_refused", False):
            return None  # nothing was changed: no "Changed notes" in its history
        return super().log_change(request, obj, message)

    def response_change(self, request, obj):
        if getattr(request, "occurrence_completion_refused", False):
            return HttpResponseRedirect(request.path)
        return super().response_change(request, obj)

    def get_urls(self):
        return [
            path(
                "<id:object_id>/scan/",
                self.admin_site.admin_view(self.scan_view),
                name="maintenance_taskoccurrence_scan",
            ),
            *super().get_urls(),
        ]

    def scan_view(self, request, object_id):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        occurrence = get_object_or_404(TaskOccurrence, pk=object_id)
        try:
            services.security_scan_request(occurrence=occurrence, actor=request.user)
            self.message_user(request, "Scan queued; findings appear here when it finishes.")
        except (ServiceRefused, PermissionDenied) as refusal:
            message_refusal(self, request, refusal)
        return HttpResponseRedirect(
            reverse("admin:maintenance_taskoccurrence_change", args=[occurrence.pk])
        )
