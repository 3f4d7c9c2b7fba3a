"""The admin pages of public incidents: publish an incident on the status page and post its
public updates (separate from the internal timeline); the incident's own page links here."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.urls import path, reverse

from incidents.models import PublicIncident, PublicUpdate
from incidents.services.public import (
    PERMISSION,
    PublicIncidentRefused,
    incident_public_update_post,
    incident_publish,
)
from opsportal.admin_mixins import ReadOnlyAdminMixin, message_refusal
from opsportal.statuspage.sources import UpdateStatus


class PublicUpdateInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = PublicUpdate
    extra = 0
    can_delete = False
    fields = ["at", "status", "message"]
    readonly_fields = fields


class PublicUpdateForm(forms.Form):
    status = forms.ChoiceField(choices=UpdateStatus.CHOICES)
    message = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), max_length=5000)


class PublicIncidentAdmin(admin.ModelAdmin):
    list_display = ["title", "incident", "published_at", "resolved_at"]
    list_select_related = ["incident"]
    show_full_result_count = False
    autocomplete_fields = []
    raw_id_fields = ["incident"]
    filter_horizontal = ["components"]
    fields = ["incident", "title", "components", "component_state", "published_at", "resolved_at"]
    readonly_fields = ["published_at", "resolved_at"]
    inlines = [PublicUpdateInline]
    change_form_template = "admin/incidents/publicincident/change_form.html"

    def has_add_permission(self, request):
        return request.user.has_perm(PERMISSION)

    def has_change_permission(self, request, obj=None):
        return request.user.has_perm(PERMISSION)

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser

    def get_readonly_fields(self, request, obj=None):
        return [*self.readonly_fields, "incident"] if obj else self.readonly_fields

    def save_model(self, request, obj, form, change):
        try:
            saved = incident_publish(
                incident=obj.incident,
                title=obj.title,
                components=[],
                component_state=obj.component_state,
                actor=request.user,
            )
        except PublicIncidentRefused as exc:
            raise PermissionDenied(exc.message) from exc
        obj.pk = saved.pk
        obj.published_at = saved.published_at

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        # The components go through the service too (audited; the page follows at once).
        incident_publish(
            incident=form.instance.incident,
            title=form.instance.title,
            components=form.cleaned_data.get("components", []),
            component_state=form.instance.component_state,
            actor=request.user,
        )

    def get_urls(self):
        return [
            path(
                "<id:object_id>/post-update/",
                self.admin_site.admin_view(self.post_update_view),
                name="incidents_publicincident_post_update",
            ),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), "update_form": PublicUpdateForm()}
        return super().change_view(request, object_id, form_url, extra_context)

    def post_update_view(self, request, object_id):
        if request.method != "POST":
            from django.http import HttpResponseNotAllowed

            return HttpResponseNotAllowed(["POST"])
        if not request.user.has_perm(PERMISSION):
            raise PermissionDenied
        public = get_object_or_404(PublicIncident, pk=object_id)
        back = reverse("admin:incidents_publicincident_change", args=[public.pk])
        form = PublicUpdateForm(request.POST)
        if not form.is_valid():
            self.message_user(request, "Choose a status and write a message.", messages.ERROR)
            return redirect(back)
        try:
            incident_public_update_post(
                public_incident=public,
                status=form.cleaned_data["status"],
                message=form.cleaned_data["message"],
                actor=request.user,
            )
        except PublicIncidentRefused as exc:
            message_refusal(self, request, exc)
            return redirect(back)
        self.message_user(request, "Public update posted; subscribers are being emailed.")
        return redirect(back)


admin.site.register(PublicIncident, PublicIncidentAdmin)
