from django.contrib import admin

from incidents.models import Incident


@admin.register(Incident)
class IncidentAdmin(admin.ModelAdmin):
    list_display = ["title", "severity", "category", "status", "team", "detected_at"]
    list_filter = ["status", "severity", "category", "team"]
    search_fields = ["title", "symptoms"]
