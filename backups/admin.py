from django.contrib import admin

from backups.models import Backup, BackupPlan


@admin.register(BackupPlan)
class BackupPlanAdmin(admin.ModelAdmin):
    list_display = ["database", "enabled", "schedule", "method", "format"]


@admin.register(Backup)
class BackupAdmin(admin.ModelAdmin):
    list_display = ["__str__", "status", "verification", "drill_result", "size_bytes"]
