import datetime as dt
from urllib.parse import urlsplit

from django import forms
from django.contrib import admin, messages
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from opsportal.admin_mixins import ReadOnlyAdminMixin, message_refusal
from opsportal.people.models import (
    Contact,
    Notification,
    OnCallOverride,
    OnCallRotation,
    RotationMember,
    Team,
    WebhookChannel,
)
from opsportal.people.selectors import on_call_by_rotation
from opsportal.people.services import notifications_retry_failed
from opsportal.people.shifts import (
    ShiftRefused,
    shift_calendar_get,
    shift_calendar_reset,
    shift_take,
    shifts_of,
)
from opsportal.systems.admin_secrets import SecretFieldsAdminMixin
from opsportal.systems.forms import SecretsWriteOnlyForm


class WebhookChannelForm(SecretsWriteOnlyForm):
    """The URL is write-only like every secret, but a new channel must have one."""

    def clean_url(self):
        url = self.cleaned_data.get("url", "")
        if not url:
            if not self.instance.pk or not self.instance.url:
                raise forms.ValidationError("Enter the webhook URL.")
            return url
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            # Say what is wrong without echoing the URL back into the page.
            raise forms.ValidationError("Enter an http:// or https:// URL.")
        return url


class ContactInline(admin.TabularInline):
    model = Contact
    extra = 0
    fields = ["name", "email", "phone", "pager_email", "user", "active"]


class WebhookInline(SecretFieldsAdminMixin, admin.TabularInline):
    model = WebhookChannel
    form = WebhookChannelForm
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


@admin.register(OnCallOverride)
class OnCallOverrideAdmin(admin.ModelAdmin):
    """Swaps and holiday cover on pages of their own: saving a rotation's page needs
    change_oncallrotation, which the on-call engineers who record swaps do not hold (and
    should not: the rotation's order and shifts are DevOps'). Audited like every change to
    a rotation (PeopleConfig.ready)."""

    list_display = ["rotation", "contact", "starts_at", "ends_at", "reason"]
    list_filter = ["rotation"]
    list_select_related = ["rotation", "contact"]
    search_fields = ["contact__name", "reason"]
    date_hierarchy = "starts_at"
    autocomplete_fields = ["contact"]
    fields = ["rotation", "contact", "starts_at", "ends_at", "reason"]


@admin.register(OnCallRotation)
class OnCallRotationAdmin(admin.ModelAdmin):
    list_display = ["name", "team", "shift_hours", "on_call_now"]
    list_select_related = ["team"]
    inlines = [RotationMemberInline, OnCallOverrideInline]
    readonly_fields = ["record_override"]

    @admin.display(description="Swaps and cover")
    def record_override(self, rotation):
        if not rotation.pk:
            return "—"
        # The override pages, where those who may not change the rotation record a swap.
        return format_html(
            '<a href="{}?rotation={}" id="record-override">Record an override</a> · '
            '<a href="{}?rotation__id__exact={}">All overrides of this rotation</a>',
            reverse("admin:people_oncalloverride_add"),
            rotation.pk,
            reverse("admin:people_oncalloverride_changelist"),
            rotation.pk,
        )

    def get_changelist_instance(self, request):
        # Who is on call for the whole page at once: per row it cost two queries each.
        changelist = super().get_changelist_instance(request)
        rotations = list(changelist.result_list)
        covering = on_call_by_rotation(rotations=rotations)
        for rotation in rotations:
            rotation.covering = covering[rotation.pk]
        return changelist

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        view = self.admin_site.admin_view
        return [
            path("my-shifts/", view(self.my_shifts_view), name="{}_{}_my_shifts".format(*info)),
            path(
                "<path:object_id>/take-shift/",
                view(self.take_shift_view),
                name="{}_{}_take_shift".format(*info),
            ),
            *super().get_urls(),
        ]

    def take_shift_view(self, request, object_id):
        """ "Take this shift": one click (a POST) from the overview's "On call now"."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        rotation = get_object_or_404(OnCallRotation, pk=object_id)
        try:
            override = shift_take(rotation=rotation, actor=request.user)
        except ShiftRefused as refusal:
            message_refusal(self, request, refusal)
        else:
            self.message_user(
                request,
                f"You are on call for {rotation.name} until "
                f"{override.ends_at:%Y-%m-%d %H:%M} UTC; {override.reason}.",
                messages.SUCCESS,
            )
        return HttpResponseRedirect(reverse("admin:index"))

    def my_shifts_view(self, request):
        """One's own shifts and the secret link of their calendar feed."""
        contact = Contact.objects.filter(user=request.user).first()
        if request.method == "POST" and contact is not None:
            shift_calendar_reset(contact=contact, actor=request.user)
            self.message_user(request, "New link made; the old one no longer works.")
            return HttpResponseRedirect(request.path)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "My on-call shifts",
            "contact": contact,
        }
        if contact is not None:
            calendar = shift_calendar_get(contact=contact)
            context["feed_url"] = request.build_absolute_uri(
                reverse("people:shift_feed", args=[calendar.token])
            )
            now = timezone.now()
            context["shifts"] = shifts_of(
                contact=contact, start=now, end=now + dt.timedelta(days=28)
            )
        return TemplateResponse(request, "admin/people/my_shifts.html", context)

    @admin.display(description="On call now")
    def on_call_now(self, rotation):
        if hasattr(rotation, "covering"):
            contact = rotation.covering
        else:
            contact = on_call_by_rotation(rotations=[rotation])[rotation.pk]
        return contact.name if contact else "nobody"


@admin.register(WebhookChannel)
class WebhookChannelAdmin(SecretFieldsAdminMixin, admin.ModelAdmin):
    form = WebhookChannelForm
    list_display = ["name", "team", "format", "active"]
    list_select_related = ["team"]


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    deletable = False  # kept as history: not deleted from the admin either
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

    def get_queryset(self, request):
        # The list shows the channel's name only; not loading its URL keeps the page
        # working (and the secret out of memory) even if a URL no longer decrypts.
        return super().get_queryset(request).defer("webhook__url")

    def has_retry_permission(self, request):
        return request.user.has_perm("people.retry_notification")

    @admin.action(description="Retry delivery now", permissions=["retry"])
    def retry_now(self, request, queryset):
        count = notifications_retry_failed(notifications=queryset, actor=request.user)
        self.message_user(request, f"{count} failed notification(s) queued again.")
