"""Alerts received, read-only: only incidents' alert service records them."""

from django.contrib import admin

from incidents.models import Alert
from opsportal.admin_mixins import ReadOnlyAdminMixin


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "received_at",
        "status",
        "title",
        "severity",
        "source",
        "incident",
        "related",
        "runs_on",
        "suppressed_by",
    ]
    list_filter = ["status", "severity", "source", "related"]
    search_fields = ["title", "fingerprint"]
    list_select_related = ["incident", "suppressed_by", "runs_on"]
    show_full_result_count = False
    readonly_fields = [f.name for f in Alert._meta.fields] + ["systems"]
