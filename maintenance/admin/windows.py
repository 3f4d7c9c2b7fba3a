"""Maintenance windows in the admin: the window form and page, its read-only inlines
(announcements, change log, suppressed alerts), the per-window buttons (start, complete, roll
back, cancel, document a change, run or tick a checklist step), the month view and each
person's calendar subscription page."""

from __future__ import annotations

import calendar as pycalendar
import contextvars
import datetime as dt

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from incidents.selectors import alerts_suppressed
from maintenance import recurrence, services
from maintenance.admin._common import _add_errors, _check_field_bounds, _check_lead_hours
from maintenance.models import (
    Announcement,
    CalendarSubscription,
    ChangeLogEntry,
    ChecklistStep,
    MaintenanceWindow,
    Phase,
)
from maintenance.selectors import windows_for_calendar, windows_overlapping
from opsportal.admin_mixins import ReadOnlyAdminMixin, message_refusal
from opsportal.people.models import Notification
from opsportal.refusals import ServiceRefused

# The request being rendered, for display columns (which are not given it); a context
# variable is per thread, so concurrent requests never see each other's.
_current_request: contextvars.ContextVar = contextvars.ContextVar("maintenance_admin_request")


# The month view pages one month back and forward: both neighbours must be real dates.
MONTH_VIEW_YEARS = (1900, 9998)


def month_from_query(value: str) -> dt.date | None:
    """The first day of `?month=YYYY-MM`, or None when it is not such a month in range."""
    year, dash, month = value.partition("-")
    if not (dash and len(year) == 4 and len(month) == 2):
        return None
    if not (year.isascii() and year.isdigit() and month.isascii() and month.isdigit()):
        return None
    if not (MONTH_VIEW_YEARS[0] <= int(year) <= MONTH_VIEW_YEARS[1] and 1 <= int(month) <= 12):
        return None
    return dt.date(int(year), int(month), 1)


def _viewer_zone(request):
    try:
        subscription = request.user.maintenance_calendar
    except (AttributeError, CalendarSubscription.DoesNotExist):
        subscription = None
    try:
        return recurrence.zone(subscription.time_zone if subscription else "UTC")
    except ValidationError:
        return dt.UTC


def _both_times(request, value: dt.datetime | None) -> str:
    """UTC, and the viewer's own time zone when it is not UTC."""
    if value is None:
        return "—"
    utc = value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    zone = _viewer_zone(request) if request is not None else dt.UTC
    if str(zone) == "UTC":
        return utc
    return f"{utc} ({value.astimezone(zone):%Y-%m-%d %H:%M} {zone})"


class MaintenanceWindowForm(forms.ModelForm):
    class Meta:
        model = MaintenanceWindow
        fields = [
            "title",
            "kind",
            "starts_at",
            "ends_at",
            "systems",
            "expected_impact",
            "owner",
            "rollback_plan",
            "emails",
            "webhook",
            "announce_lead_hours",
            "public",
            "public_title",
            "public_impact",
            "public_components",
        ]

    def clean(self):
        cleaned = super().clean()
        window = self.instance
        _check_field_bounds(self, cleaned, ["starts_at", "ends_at"])
        if cleaned.get("starts_at") and cleaned.get("ends_at"):
            try:
                if window.pk is None:
                    probe = MaintenanceWindow(
                        starts_at=cleaned["starts_at"], ends_at=cleaned["ends_at"]
                    )
                    services.window_validate(window=probe)
                else:
                    # Moving an occurrence: refused on the form (into the past, end before
                    # start, a window that has started), not as an error page on save.
                    previous = MaintenanceWindow.objects.get(pk=window.pk)
                    services.window_change_validate(
                        previous=previous,
                        starts_at=cleaned["starts_at"],
                        ends_at=cleaned["ends_at"],
                    )
            except ValidationError as exc:
                _add_errors(self, exc)
        _check_lead_hours(self, cleaned)
        return cleaned


class AnnouncementInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = Announcement
    extra = 0
    can_delete = False
    fields = ["sent_at", "kind", "lead_hours", "subject", "recipients"]
    readonly_fields = fields


class ChangeLogInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = ChangeLogEntry
    extra = 0
    can_delete = False
    fields = ["at", "author", "text"]
    readonly_fields = fields
    verbose_name_plural = "Change log (document changes)"


class SuppressedAlertInline(ReadOnlyAdminMixin, admin.TabularInline):
    # Incidents' alerts, read through its selector (maintenance never imports its models).
    model = alerts_suppressed().model
    fk_name = "suppressed_by"
    extra = 0
    can_delete = False
    fields = ["received_at", "status", "title", "severity", "source"]
    readonly_fields = fields
    verbose_name_plural = "Alerts suppressed by this window"
    show_change_link = True

    def get_queryset(self, request):
        return super().get_queryset(request) & alerts_suppressed()


@admin.register(MaintenanceWindow)
class MaintenanceWindowAdmin(admin.ModelAdmin):
    form = MaintenanceWindowForm
    change_form_template = "admin/maintenance/maintenancewindow/change_form.html"
    change_list_template = "admin/maintenance/maintenancewindow/change_list.html"
    list_display = ["title", "kind", "status", "when", "plan"]
    list_filter = ["status", "kind", "plan"]
    search_fields = ["title"]
    date_hierarchy = "starts_at"
    list_select_related = ["plan"]
    show_full_result_count = False
    filter_horizontal = ["systems", "public_components"]
    inlines = [SuppressedAlertInline, ChangeLogInline, AnnouncementInline]
    readonly_fields = [
        "status",
        "plan",
        "occurrence_start",
        "times_for_you",
        "started_at",
        "finished_at",
        "start_override_reason",
    ]
    fieldsets = [
        (None, {"fields": ["title", "kind", "status", "plan", "occurrence_start"]}),
        ("When (stored in UTC)", {"fields": ["starts_at", "ends_at", "times_for_you"]}),
        ("Scope", {"fields": ["systems", "expected_impact", "owner", "rollback_plan"]}),
        ("Announcements", {"fields": ["emails", "webhook", "announce_lead_hours"]}),
        (
            "Public status page",
            {"fields": ["public", "public_title", "public_impact", "public_components"]},
        ),
        ("Progress", {"fields": ["started_at", "finished_at", "start_override_reason"]}),
    ]

    @admin.display(description="When", ordering="starts_at")
    def when(self, obj):
        return _both_times(_current_request.get(None), obj.starts_at)

    @admin.display(description="Start and end in your time zone")
    def times_for_you(self, obj):
        if not obj.pk:
            return "—"
        request = _current_request.get(None)
        return format_html(
            "{} → {}", _both_times(request, obj.starts_at), _both_times(request, obj.ends_at)
        )

    def get_queryset(self, request):
        _current_request.set(request)
        return super().get_queryset(request)

    def get_form(self, request, obj=None, **kwargs):
        _current_request.set(request)
        return super().get_form(request, obj, **kwargs)

    def save_model(self, request, obj, form, change):
        systems = form.cleaned_data.get("systems", [])
        try:
            if change:
                services.window_update(window=obj, systems=systems, actor=request.user)
            else:
                services.window_schedule(window=obj, systems=systems, actor=request.user)
        except ValidationError as exc:
            # Validated in the form already; a race (e.g. the window started meanwhile).
            raise PermissionDenied(" ".join(exc.messages)) from exc
        overlapping = list(windows_overlapping(window=obj, system_ids=[s.pk for s in systems]))
        if overlapping:
            self.message_user(
                request,
                "This window overlaps on the same system(s) with: "
                + "; ".join(str(w) for w in overlapping),
                messages.WARNING,
            )

    def save_related(self, request, form, formsets, change):
        # Systems were set by the service; only the inlines (read-only) remain.
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        _current_request.set(request)
        extra_context = extra_context or {}
        if object_id:
            window = self.get_object(request, object_id)
            if window is not None:
                steps = list(window.steps.select_related("completed_by"))
                extra_context.update(
                    phases=[
                        (label, [s for s in steps if s.phase == value])
                        for value, label in Phase.choices
                    ],
                    blockers=services.window_start_blockers(window=window),
                    can_conduct=request.user.has_perm(services.CONDUCT),
                    overlapping=list(windows_overlapping(window=window)),
                    notifications=Notification.objects.filter(
                        about_type__app_label="maintenance",
                        about_type__model="maintenancewindow",
                        about_id=str(window.pk),
                    )[:50],
                )
        return super().changeform_view(request, object_id, form_url, extra_context)

    # --- workflow views ---------------------------------------------------------------

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        view = self.admin_site.admin_view
        return [
            path("month/", view(self.month_view), name="{}_{}_month".format(*info)),
            path("subscribe/", view(self.subscription_view), name="{}_{}_subscribe".format(*info)),
            path(
                "<id:object_id>/do/<str:action>/",
                view(self.window_action_view),
                name="{}_{}_action".format(*info),
            ),
            path(
                "<id:object_id>/steps/<id:step_id>/<str:action>/",
                view(self.step_action_view),
                name="{}_{}_step".format(*info),
            ),
            *super().get_urls(),
        ]

    def _back(self, window):
        return HttpResponseRedirect(
            reverse("admin:maintenance_maintenancewindow_change", args=[window.pk])
        )

    WINDOW_ACTIONS = {
        "start": ("Start the window", "Reason for starting anyway (only if something is open)"),
        "complete": ("Complete the window", "What was done (optional)"),
        "rollback": ("Roll back the window", "What was rolled back and why"),
        "cancel": ("Cancel (skip) the window", "Why it is cancelled"),
        "log": ("Document a change", "The change"),
    }

    def window_action_view(self, request, object_id, action):
        window = get_object_or_404(MaintenanceWindow, pk=object_id)
        if action not in self.WINDOW_ACTIONS:
            raise Http404(f"No window action {action!r}.")
        if not self.has_view_permission(request, window):
            raise PermissionDenied
        try:
            # The page and its form are refused alike: back to the window, saying which
            # permission is missing (the service checks it again on POST).
            services.window_action_require(action=action, actor=request.user)
        except PermissionDenied as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return self._back(window)
        title, label = self.WINDOW_ACTIONS[action]
        if request.method == "POST":
            text = request.POST.get("text", "")
            try:
                if action == "start":
                    services.window_start(window=window, actor=request.user, override_reason=text)
                    done = "Started: alerts about its systems are suppressed until it ends."
                elif action == "complete":
                    services.window_finish(window=window, actor=request.user, note=text)
                    done = "Completed: alerts are handled normally again."
                elif action == "rollback":
                    services.window_finish(
                        window=window, actor=request.user, rolled_back=True, note=text
                    )
                    done = "Rolled back: alerts are handled normally again."
                elif action == "cancel":
                    services.window_cancel(window=window, actor=request.user, reason=text)
                    done = "Cancelled."
                else:
                    services.window_log_change(window=window, actor=request.user, text=text)
                    done = "Change documented."
            except (ServiceRefused, PermissionDenied) as refusal:
                message_refusal(self, request, refusal)
                if action != "start" or text:
                    return self._back(window)
            else:
                self.message_user(request, done, messages.SUCCESS)
                return self._back(window)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": window,
            "title": f"{title}: {window.title}",
            "label": label,
            "action": action,
            "blockers": services.window_start_blockers(window=window) if action == "start" else [],
        }
        return TemplateResponse(request, "admin/maintenance/window_action.html", context)

    def step_action_view(self, request, object_id, step_id, action):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        step = get_object_or_404(ChecklistStep, pk=step_id, window_id=object_id)
        note = request.POST.get("text", "")
        try:
            if action == "run":
                services.step_request(step=step, actor=request.user)
                self.message_user(request, f"“{step.title}” queued; it runs in the background.")
            elif action == "done":
                services.step_mark_done(step=step, actor=request.user, note=note)
                self.message_user(request, f"“{step.title}” done.", messages.SUCCESS)
            elif action == "skip":
                services.step_skip(step=step, actor=request.user, reason=note)
                self.message_user(request, f"“{step.title}” skipped.")
            else:
                raise PermissionDenied
        except (ServiceRefused, PermissionDenied) as refusal:
            message_refusal(self, request, refusal)
        return self._back(step.window)

    def month_view(self, request):
        """The month's windows as a calendar grid (UTC days)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        today = timezone.now().date()
        first = month_from_query(request.GET.get("month", ""))
        if first is None:
            if "month" in request.GET:
                self.message_user(
                    request,
                    f"“month” must be YYYY-MM between {MONTH_VIEW_YEARS[0]}-01 and "
                    f"{MONTH_VIEW_YEARS[1]}-12; showing this month.",
                    messages.WARNING,
                )
            first = today.replace(day=1)
        following = (first + dt.timedelta(days=32)).replace(day=1)
        previous = (first - dt.timedelta(days=1)).replace(day=1)
        start = dt.datetime.combine(first, dt.time(), tzinfo=dt.UTC)
        end = dt.datetime.combine(following, dt.time(), tzinfo=dt.UTC)
        by_day: dict[dt.date, list[MaintenanceWindow]] = {}
        for window in windows_for_calendar(start=start, end=end, include_cancelled=True):
            day = max(window.starts_at.astimezone(dt.UTC).date(), first)
            last = min(window.ends_at.astimezone(dt.UTC).date(), following - dt.timedelta(days=1))
            while day <= last:
                by_day.setdefault(day, []).append(window)
                day += dt.timedelta(days=1)
        weeks = [
            [(day, by_day.get(day, []), day.month == first.month) for day in week]
            for week in pycalendar.Calendar(firstweekday=0).monthdatescalendar(
                first.year, first.month
            )
        ]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Maintenance windows, {first:%B %Y} (UTC)",
            "weeks": weeks,
            "weekdays": ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"],
            "previous": f"{previous:%Y-%m}",
            "following": f"{following:%Y-%m}",
            "today": today,
        }
        return TemplateResponse(request, "admin/maintenance/month.html", context)

    def subscription_view(self, request):
        """Each person's secret calendar link, its reset, and their display time zone."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            if "reset" in request.POST:
                services.calendar_subscription_reset(user=request.user)
                self.message_user(request, "New link made; the old one no longer works.")
            else:
                try:
                    services.calendar_time_zone_set(
                        user=request.user, time_zone=request.POST.get("time_zone", "").strip()
                    )
                    self.message_user(request, "Time zone saved.", messages.SUCCESS)
                except ValidationError as exc:
                    self.message_user(request, " ".join(exc.messages), messages.ERROR)
            return HttpResponseRedirect(request.path)
        subscription = services.calendar_subscription_get(user=request.user)
        feed_url = request.build_absolute_uri(
            reverse("maintenance:calendar_feed", args=[subscription.token])
        )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Subscribe to maintenance windows",
            "subscription": subscription,
            "feed_url": feed_url,
        }
        return TemplateResponse(request, "admin/maintenance/subscribe.html", context)
