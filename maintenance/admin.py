from django.contrib import admin

from maintenance.models import MaintenanceWindow


@admin.register(MaintenanceWindow)
class MaintenanceWindowAdmin(admin.ModelAdmin):
    list_display = ["title", "starts_at", "ends_at"]
