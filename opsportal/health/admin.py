from django.contrib import admin

from opsportal.admin_mixins import ReadOnlyAdminMixin
from opsportal.health.models import Heartbeat


@admin.register(Heartbeat)
class HeartbeatAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["name", "at"]
