"""The admin of escalation policies (edited with their steps, checked before saving) and of
the escalations that ran (read-only, with each page and its outcome)."""

from django import forms
from django.contrib import admin

from incidents.models import Escalation, EscalationPage, EscalationPolicy, EscalationStep
from incidents.services.escalation import EscalationRefused, escalation_policy_check
from opsportal.admin_mixins import ReadOnlyAdminMixin


class StepFormSet(forms.BaseInlineFormSet):
    def clean(self):
        super().clean()
        if any(self.errors):
            return
        steps = [
            form.instance
            for form in self.forms
            if form.has_changed() or form.instance.pk
            if not (self.can_delete and self._should_delete_form(form))
        ]
        try:
            escalation_policy_check(policy=self.instance, steps=steps)
        except EscalationRefused as refusal:
            raise forms.ValidationError(refusal.message) from refusal


class EscalationStepInline(admin.TabularInline):
    model = EscalationStep
    fk_name = "policy"
    formset = StepFormSet
    extra = 0
    fields = [
        "position",
        "target",
        "contact",
        "team",
        "next_policy",
        "email",
        "chat",
        "wait_minutes",
        "repeat",
    ]


@admin.register(EscalationPolicy)
class EscalationPolicyAdmin(admin.ModelAdmin):
    list_display = ["name", "team", "severity", "active"]
    list_filter = ["team", "severity", "active"]
    list_select_related = ["team"]
    inlines = [EscalationStepInline]


class EscalationPageInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = EscalationPage
    fields = ["sequence", "description", "due_at", "status", "sent_at", "outcome"]
    readonly_fields = fields
    extra = 0


@admin.register(Escalation)
class EscalationAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    deletable = False
    list_display = ["incident", "policy_name", "status", "started_at", "stopped_at", "stopped_by"]
    list_filter = ["status"]
    list_select_related = ["incident"]
    show_full_result_count = False
    inlines = [EscalationPageInline]
