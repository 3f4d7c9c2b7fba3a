"""Personal API tokens in the admin: every staff user creates and revokes their own (a
superuser sees and revokes everyone's). The token is shown once, on the page after saving."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse

from opsportal.admin_mixins import message_refusal
from opsportal.api.models import ApiToken
from opsportal.api.services import (
    TokenRefused,
    api_token_create,
    api_token_expiry_check,
    api_token_revoke,
)


def _staff(request) -> bool:
    return request.user.is_active and request.user.is_staff


class ApiTokenForm(forms.ModelForm):
    class Meta:
        model = ApiToken
        fields = ["name", "scope", "expires_at"]

    def clean_expires_at(self):
        # The service's rule, shown on the field (the service checks it again on saving).
        expires_at = self.cleaned_data.get("expires_at")
        try:
            api_token_expiry_check(expires_at)
        except TokenRefused as exc:
            raise forms.ValidationError(exc.message) from exc
        return expires_at


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    form = ApiTokenForm
    list_display = [
        "name",
        "prefix_shown",
        "user",
        "scope",
        "state_shown",
        "created_at",
        "expires_at",
        "last_used_at",
        "last_used_from",
    ]
    list_filter = ["scope"]
    list_select_related = ["user"]
    search_fields = ["name", "prefix"]
    show_full_result_count = False
    actions = ["revoke_tokens"]
    readonly_fields = [
        "name",
        "prefix_shown",
        "user",
        "scope",
        "state_shown",
        "created_at",
        "expires_at",
        "last_used_at",
        "last_used_from",
        "revoked_at",
        "revoked_by",
    ]

    @admin.display(description="Prefix")
    def prefix_shown(self, token):
        return f"ops_{token.prefix}_…"

    @admin.display(description="State")
    def state_shown(self, token):
        return token.state()

    # Tokens are personal: any staff user manages their own; nobody edits or deletes one
    # (revoking keeps the row, as the history of what it did refers to it).
    def has_module_permission(self, request):
        return _staff(request)

    def has_view_permission(self, request, obj=None):
        return _staff(request) and (
            obj is None or request.user.is_superuser or obj.user_id == request.user.pk
        )

    def has_add_permission(self, request):
        return _staff(request)

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_revoke_permission(self, request):
        return _staff(request)

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        return queryset if request.user.is_superuser else queryset.filter(user=request.user)

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else self.readonly_fields

    def get_fields(self, request, obj=None):
        return ApiTokenForm.Meta.fields if obj is None else self.readonly_fields

    def save_model(self, request, obj, form, change):
        if change:
            raise PermissionDenied
        try:
            token, plain = api_token_create(
                user=request.user,
                name=form.cleaned_data["name"],
                scope=form.cleaned_data["scope"],
                expires_at=form.cleaned_data.get("expires_at"),
                actor=request.user,
            )
        except TokenRefused as exc:
            raise PermissionDenied(exc.message) from exc
        obj.pk = token.pk
        obj.refresh_from_db()
        request._api_token_plain = plain

    def log_addition(self, request, obj, message):
        return None  # the service wrote the audit record; no second history entry

    def response_add(self, request, obj, post_url_continue=None):
        # Shown once, on this page only: never in a message (cookie) or a URL.
        context = {
            **self.admin_site.each_context(request),
            "title": "API token created",
            "opts": self.opts,
            "token": obj,
            "plain": request._api_token_plain,
        }
        return TemplateResponse(request, "admin/api/apitoken/created.html", context)

    @admin.action(description="Revoke the selected tokens", permissions=["revoke"])
    def revoke_tokens(self, request, queryset):
        revoked = 0
        for token in queryset.select_related("user"):
            try:
                api_token_revoke(token=token, actor=request.user)
            except (TokenRefused, PermissionDenied) as exc:
                message_refusal(self, request, exc, messages.WARNING)
            else:
                revoked += 1
        if revoked:
            self.message_user(request, f"{revoked} token(s) revoked.", messages.SUCCESS)
