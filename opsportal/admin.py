"""The schedules' list (django-celery-beat) as the portal serves it.

django-celery-beat's own list actions (enable, disable, toggle, run now) declare no
permission, so anyone who may see the schedules (Viewers included) could switch off the
backups or run a task at once, with a bulk update that leaves no audit record. Here they need
the change permission on schedules and each one is audited."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django_celery_beat.admin import CrontabScheduleAdmin as BeatCrontabScheduleAdmin
from django_celery_beat.admin import PeriodicTaskAdmin as BeatPeriodicTaskAdmin
from django_celery_beat.admin import PeriodicTaskForm as BeatPeriodicTaskForm
from django_celery_beat.models import CrontabSchedule, PeriodicTask

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


JSON_MAX_LENGTH = 10_000


class PeriodicTaskForm(BeatPeriodicTaskForm):
    """django-celery-beat's form, made to answer every input with a form error (issue #17):
    its clean() read a task name that had failed its own field check (KeyError), its
    registered-task choice accepted any text (a NUL then failed in the database), and its
    JSON check let nesting overflow the decoder (RecursionError)."""

    def clean_regtask(self):
        value = self.cleaned_data.get("regtask") or ""
        if value and value not in self.fields["regtask"].widget.celery_app.tasks:
            raise forms.ValidationError("Choose a task from the list of registered tasks.")
        return value

    def clean(self):
        if "task" not in self.cleaned_data and "task" in self.errors:
            return self.cleaned_data  # its own error says what is wrong
        return super().clean()

    def _clean_json(self, field):
        value = self.cleaned_data.get(field) or ""
        if len(value) > JSON_MAX_LENGTH:
            raise forms.ValidationError(f"At most {JSON_MAX_LENGTH:,} characters of JSON.")
        try:
            return super()._clean_json(field)
        except RecursionError:
            raise forms.ValidationError("The JSON is nested too deeply.") from None


class PeriodicTaskAdmin(BeatPeriodicTaskAdmin):
    form = PeriodicTaskForm
    actions = [_permissioned_and_audited(name, text) for name, text in SCHEDULE_ACTIONS.items()]


CRONTAB_FIELDS = ["minute", "hour", "day_of_month", "month_of_year", "day_of_week"]


class CrontabScheduleForm(forms.ModelForm):
    """The crontab fields' validators raise celery's ParseException (not a ValidationError)
    for some values ("-1"): run them here and say so as a form error."""

    class Meta:
        model = CrontabSchedule
        fields = [*CRONTAB_FIELDS, "timezone"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The time zone's hidden "initial" copy came back from the browser and was looked up
        # as a file name (OSError: File name too long); the form's own initial is enough.
        if "timezone" in self.fields:  # absent on a read-only (view permission) page
            self.fields["timezone"].show_hidden_initial = False

    def _clean_crontab(self, name: str) -> str:
        value = self.cleaned_data.get(name)
        try:
            CrontabSchedule._meta.get_field(name).run_validators(value)
        except forms.ValidationError:
            raise
        except Exception as exc:  # celery.schedules.ParseException and its kin
            raise forms.ValidationError(f"Not a crontab value: {exc}") from None
        return value

    def clean_minute(self):
        return self._clean_crontab("minute")

    def clean_hour(self):
        return self._clean_crontab("hour")

    def clean_day_of_month(self):
        return self._clean_crontab("day_of_month")

    def clean_month_of_year(self):
        return self._clean_crontab("month_of_year")

    def clean_day_of_week(self):
        return self._clean_crontab("day_of_week")


class CrontabScheduleAdmin(BeatCrontabScheduleAdmin):
    form = CrontabScheduleForm


admin.site.unregister(PeriodicTask)
admin.site.register(PeriodicTask, PeriodicTaskAdmin)
admin.site.unregister(CrontabSchedule)
admin.site.register(CrontabSchedule, CrontabScheduleAdmin)
