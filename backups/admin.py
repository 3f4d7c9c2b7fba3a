from django.contrib import admin

from backups.models import BackupPlan


@admin.register(BackupPlan)
class BackupPlanAdmin(admin.ModelAdmin):
    list_display = ["database", "enabled"]
