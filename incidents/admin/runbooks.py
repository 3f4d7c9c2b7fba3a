"""Runbooks and their steps (the playbooks attached to incidents as checklists)."""

from django.contrib import admin

from incidents.models import Runbook, RunbookStep


class RunbookStepInline(admin.TabularInline):
    model = RunbookStep
    extra = 0
    fields = ["position", "phase", "text", "operation_kind", "operation_params"]


@admin.register(Runbook)
class RunbookAdmin(admin.ModelAdmin):
    list_display = ["name", "category"]
    inlines = [RunbookStepInline]
