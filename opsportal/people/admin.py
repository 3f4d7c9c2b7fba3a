from django.contrib import admin

from opsportal.people.models import (
    Contact,
    Notification,
    OnCallOverride,
    OnCallRotation,
    RotationMember,
    Team,
    WebhookChannel,
)
from opsportal.people.selectors import on_call_now
from opsportal.people.services import notifications_retry_failed
from opsportal.systems.forms import SecretsWriteOnlyForm


class ContactInline(admin.TabularInline):
    model = Contact
    extra = 0
    fields = ["name", "email", "phone", "pager_email", "user", "active"]


class WebhookInline(admin.TabularInline):
    model = WebhookChannel
    form = SecretsWriteOnlyForm
    extra = 0
    fields = ["name", "format", "url", "active"]


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["name", "responsibility", "email"]
    search_fields = ["name", "email"]
    filter_horizontal = ["members"]
    inlines = [ContactInline, WebhookInline]


@admin.register(Contact)
class ContactAdmin(admin.ModelAdmin):
    list_display = ["name", "team", "email", "phone", "pager_email", "active"]
    list_filter = ["team", "active"]
    list_select_related = ["team"]
    search_fields = ["name", "email", "phone"]


class RotationMemberInline(admin.TabularInline):
    model = RotationMember
    extra = 0
    autocomplete_fields = ["contact"]


class OnCallOverrideInline(admin.TabularInline):
    model = OnCallOverride
    extra = 0
    autocomplete_fields = ["contact"]


@admin.register(OnCallRotation)
class OnCallRotationAdmin(admin.ModelAdmin):
    list_display = ["name", "team", "shift_hours", "on_call_now"]
    list_select_related = ["team"]
    inlines = [RotationMemberInline, OnCallOverrideInline]

    @admin.display(description="On call now")
    def on_call_now(self, rotation):
        contact = on_call_now(rotation=rotation)
        return contact.name if contact else "nobody"


@admin.register(WebhookChannel)
class WebhookChannelAdmin(admin.ModelAdmin):
    form = SecretsWriteOnlyForm
    list_display = ["name", "team", "format", "active"]
    list_select_related = ["team"]


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = [
        "created_at",
        "subject",
        "channel",
        "destination",
        "status",
        "attempts",
        "last_error",
    ]
    list_filter = ["status", "channel", "responsibility"]
    search_fields = ["subject", "recipient"]
    list_select_related = ["webhook"]
    show_full_result_count = False
    readonly_fields = [f.name for f in Notification._meta.fields]
    actions = ["retry_now"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Retry delivery now", permissions=["view"])
    def retry_now(self, request, queryset):
        count = notifications_retry_failed(notifications=queryset)
        self.message_user(request, f"{count} failed notification(s) queued again.")
