from django.contrib import admin
from django.db.models import Count, Q
from django.utils.html import format_html

from opsportal.admin_mixins import ReadOnlyAdminMixin
from opsportal.monitoring.catalogue import METRICS
from opsportal.monitoring.models import AlertRule, AlertState, AlertStatus, CollectionSchedule


class AlertStateInline(admin.TabularInline):
    model = AlertState
    fields = [
        "system",
        "subject",
        "status",
        "since",
        "clearing_since",
        "last_value",
        "incident_id",
        "delivered",
    ]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True
    verbose_name_plural = "Where the rule stands (non-OK series)"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("system")

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(AlertRule)
class AlertRuleAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "enabled",
        "condition",
        "system_kind",
        "severity",
        "runbook_name",
        "firing",
        "problem",
    ]
    list_filter = ["enabled", "system_kind", "severity", "category"]
    search_fields = ["name", "metric", "runbook_name"]
    filter_horizontal = ["systems"]
    readonly_fields = ["problem", "created_at", "updated_at"]
    inlines = [AlertStateInline]
    fieldsets = [
        (None, {"fields": ["name", "enabled", "description", "problem"]}),
        (
            "Condition",
            {
                "fields": [
                    "metric",
                    "comparison",
                    "threshold",
                    "for_seconds",
                    "keep_firing_seconds",
                ]
            },
        ),
        ("Which systems", {"fields": ["system_kind", "systems"]}),
        (
            "Incident",
            {"fields": ["severity", "category", "runbook_name", "auto_resolve"]},
        ),
        ("History", {"fields": ["created_at", "updated_at"]}),
    ]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(firing_count=Count("states", filter=Q(states__status=AlertStatus.FIRING)))
        )

    @admin.display(description="Firing", ordering="firing_count")
    def firing(self, rule):
        count = getattr(rule, "firing_count", None)
        if count is None:
            count = rule.states.filter(status=AlertStatus.FIRING).count()
        if not count:
            return "—"
        return format_html('<strong class="status-failing">{} firing</strong>', count)

    @admin.display(description="Problem")
    def problem(self, rule):
        # Rules loaded or edited outside the form may name a metric nobody collects; the
        # evaluator skips them and this says why.
        if rule.metric not in METRICS:
            return f"No metric named {rule.metric!r} is collected: this rule never fires."
        return ""


@admin.register(CollectionSchedule)
class CollectionScheduleAdmin(admin.ModelAdmin):
    list_display = [
        "system",
        "enabled",
        "interval_seconds",
        "status",
        "last_error",
        "last_finished_at",
        "last_duration_ms",
    ]
    list_filter = ["enabled", "last_ok", "system__kind"]
    search_fields = ["system__name"]
    list_select_related = ["system"]
    list_editable = ["enabled", "interval_seconds"]
    show_full_result_count = False
    readonly_fields = [
        "system",
        "next_due_at",
        "lease_until",
        "last_started_at",
        "last_finished_at",
        "last_ok",
        "last_error",
        "last_duration_ms",
    ]

    def has_add_permission(self, request):
        return False  # every registered system gets one at the default interval

    @admin.display(description="Last collection")
    def status(self, schedule):
        if schedule.last_ok is None:
            return "not collected yet"
        css, word = ("status-ok", "OK") if schedule.last_ok else ("status-failing", "FAILED")
        return format_html('<strong class="{}">{}</strong>', css, word)


@admin.register(AlertState)
class AlertStateAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "rule",
        "system",
        "subject",
        "status",
        "since",
        "clearing_since",
        "last_value",
        "incident_id",
    ]
    list_filter = ["status", "rule"]
    list_select_related = ["rule", "system"]
    search_fields = ["rule__name", "system__name", "subject", "fingerprint"]
    show_full_result_count = False
    readonly_fields = [f.name for f in AlertState._meta.fields]
