"""The user admin gets a superuser-only, audited "Reset two-factor" page; django-otp's own
device admins are removed (they would show TOTP keys and backup codes)."""

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.core.exceptions import PermissionDenied
from django.db.models import Exists, OuterRef
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from opsportal.accounts import services
from opsportal.admin_mixins import message_refusal
from opsportal.refusals import ServiceRefused

for _model in (TOTPDevice, StaticDevice):
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)

User = get_user_model()


class TwoFactorResetForm(forms.Form):
    reason = forms.CharField(
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Why (e.g. 'lost phone, confirmed by a call'); recorded in the audit history.",
    )


class PortalUserAdmin(UserAdmin):
    list_display = [*UserAdmin.list_display, "two_factor"]

    @admin.display(description="Two-factor")
    def two_factor(self, user) -> str:
        set_up = getattr(user, "_two_factor", None)
        if set_up is None:
            set_up = services.two_factor_is_set_up(user=user)
        return "set up" if set_up else "not set up"

    def get_queryset(self, request):
        # The list shows each user's two-factor state without a query per row.
        confirmed = TOTPDevice.objects.filter(user=OuterRef("pk"), confirmed=True)
        return super().get_queryset(request).annotate(_two_factor=Exists(confirmed))

    def get_urls(self):
        return [
            path(
                "<id:id>/two-factor/reset/",
                self.admin_site.admin_view(self.two_factor_reset_view),
                name="auth_user_two_factor_reset",
            ),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "can_reset_two_factor": request.user.is_superuser,
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def two_factor_reset_view(self, request, id):
        if not request.user.is_superuser:
            raise PermissionDenied
        target = get_object_or_404(User, pk=id)
        form = TwoFactorResetForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                services.two_factor_reset(
                    user=target, actor=request.user, reason=form.cleaned_data["reason"]
                )
            except ServiceRefused as refusal:
                message_refusal(self, request, refusal)
            else:
                self.message_user(
                    request,
                    f"Two-factor sign-in of {target.get_username()} was reset: they set up a "
                    "new authenticator at their next sign-in.",
                    messages.SUCCESS,
                )
                return redirect("admin:auth_user_change", target.pk)
        return TemplateResponse(
            request,
            "accounts/two_factor_reset.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "original": target,
                "title": f"Reset two-factor sign-in of {target.get_username()}",
                "form": form,
                "set_up": services.two_factor_is_set_up(user=target),
            },
        )


if admin.site.is_registered(User):
    admin.site.unregister(User)
admin.site.register(User, PortalUserAdmin)
