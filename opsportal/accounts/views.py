"""Pages for one's own second factor: set up, verify a session, see and renew backup codes."""

from base64 import b32encode

import qrcode
import qrcode.image.svg
from django.contrib import admin, messages
from django.contrib.auth.signals import user_login_failed
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, resolve_url
from django.template.response import TemplateResponse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_otp import login as otp_login

from opsportal.accounts import services
from opsportal.accounts.forms import CodeForm


def _next_url(request: HttpRequest) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return resolve_url("admin:index")


def _render(request: HttpRequest, template: str, title: str, **context) -> TemplateResponse:
    return TemplateResponse(
        request,
        template,
        {
            **admin.site.each_context(request),
            # The app list would only lead back here until the second factor is verified.
            "is_nav_sidebar_enabled": False,
            "title": title,
            "next": request.POST.get("next") or request.GET.get("next") or "",
            **context,
        },
    )


def _qr_svg(text: str) -> str:
    # Drawn here as inline SVG: the key never leaves the portal for a QR-code service.
    image = qrcode.make(text, image_factory=qrcode.image.svg.SvgPathImage, box_size=10)
    return mark_safe(image.to_string(encoding="unicode"))  # noqa: S308 (qrcode's own SVG)


def _grouped(key: str) -> str:
    return " ".join(key[i : i + 4] for i in range(0, len(key), 4))


@require_GET
def overview(request: HttpRequest) -> TemplateResponse:
    user = request.user
    return _render(
        request,
        "accounts/overview.html",
        "Two-factor sign-in",
        set_up=services.two_factor_is_set_up(user=user),
        backup_codes_left=services.backup_codes_left(user=user),
        verified=user.is_verified(),
    )


@require_http_methods(["GET", "POST"])
def setup(request: HttpRequest) -> HttpResponse:
    user = request.user
    if services.two_factor_is_set_up(user=user) and not user.is_verified():
        # Replacing an authenticator needs the current one: a password alone is not enough.
        return redirect("accounts:two_factor_verify")
    device = services.two_factor_enrolment_start(user=user)
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            codes = services.two_factor_enrolment_confirm(
                user=user, device=device, token=form.cleaned_data["otp_token"]
            )
        except services.TwoFactorRefused as refusal:
            form.add_error("otp_token", str(refusal))
        else:
            device.refresh_from_db()
            otp_login(request, device)
            return _render(
                request,
                "accounts/backup_codes.html",
                "Two-factor sign-in is set up",
                codes=codes,
                continue_url=_next_url(request),
            )
    return _render(
        request,
        "accounts/setup.html",
        "Set up two-factor sign-in",
        form=form,
        qr_svg=_qr_svg(device.config_url),
        secret=_grouped(b32encode(device.bin_key).decode()),
    )


@require_http_methods(["GET", "POST"])
def verify(request: HttpRequest) -> HttpResponse:
    user = request.user
    if not services.two_factor_is_set_up(user=user):
        return redirect("accounts:two_factor_setup")
    if user.is_verified():
        return redirect(_next_url(request))
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        device = services.two_factor_verify(user=user, token=form.cleaned_data["otp_token"])
        if device is not None:
            otp_login(request, device)
            return redirect(_next_url(request))
        user_login_failed.send(
            sender=__name__, credentials={"username": user.get_username()}, request=request
        )
        form.add_error("otp_token", "That code is not valid. Type the code the app shows now.")
    return _render(request, "accounts/verify.html", "Enter your authentication code", form=form)


@require_POST
def backup_codes(request: HttpRequest) -> HttpResponse:
    try:
        codes = services.backup_codes_regenerate(user=request.user)
    except services.TwoFactorRefused as refusal:
        messages.error(request, str(refusal))
        return redirect("accounts:two_factor")
    return _render(
        request,
        "accounts/backup_codes.html",
        "New backup codes",
        codes=codes,
        continue_url=resolve_url("accounts:two_factor"),
    )
