"""The schedules' list (django-celery-beat) as the portal serves it.

django-celery-beat's own list actions (enable, disable, toggle, run now) declare no
permission, so anyone who may see the schedules (Viewers included) could switch off the
backups or run a task at once, with a bulk update that leaves no audit record. Here they need
the change permission on schedules and each one is audited."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django_celery_beat.admin import PeriodicTaskAdmin as BeatPeriodicTaskAdmin
from django_celery_beat.models import PeriodicTask

from opsportal.audit.models import AuditAction
from opsportal.audit.services import audit_record

SCHEDULE_ACTIONS = {
    "enable_tasks": "Enabled the schedule from the schedules list",
    "disable_tasks": "Disabled the schedule from the schedules list",
    "toggle_tasks": "Toggled the schedule from the schedules list",
    "run_tasks": "Sent the schedule's task to run now from the schedules list",
}


def _permissioned_and_audited(name: str, message: str):
    beat_action = getattr(BeatPeriodicTaskAdmin, name)

    @admin.action(permissions=["change"], description=beat_action.short_description)
    def action(modeladmin, request: HttpRequest, queryset: QuerySet[PeriodicTask]) -> None:
        chosen = list(queryset.order_by("name"))
        beat_action(modeladmin, request, queryset)
        for task in PeriodicTask.objects.filter(pk__in=[t.pk for t in chosen]):
            audit_record(
                action=AuditAction.OPERATION if name == "run_tasks" else AuditAction.CHANGE,
                obj=task,
                actor=request.user,
                message=f"{message} (enabled: {'yes' if task.enabled else 'no'})",
            )

    action.__name__ = name
    return action


class PeriodicTaskAdmin(BeatPeriodicTaskAdmin):
    actions = [_permissioned_and_audited(name, text) for name, text in SCHEDULE_ACTIONS.items()]


admin.site.unregister(PeriodicTask)
admin.site.register(PeriodicTask, PeriodicTaskAdmin)
