"""Signing test users in with a real second factor.

Two-factor sign-in stays required in the test environment (as in production), so the shared
fixtures give each user a real authenticator, enrolled through the same service the
enrolment page calls with a code computed from its key, and verify sessions the way
django-otp does after a correct code. Browser tests type computed codes into the real forms."""

from __future__ import annotations

import time
from base64 import b32decode

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.http import HttpRequest
from django.test import Client
from django_otp import login as otp_login
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from opsportal.accounts import services


def _step_now(device: TOTPDevice) -> int:
    return int((time.time() - device.t0) // device.step)


def authenticator_code(device: TOTPDevice) -> str:
    """The code the user's phone would show for the first time step the device has not yet
    accepted: now, or the next step when now's code was used already (the device accepts a
    code one step ahead: a phone whose clock runs a little fast). Waits for the clock when
    even that was used."""
    device.refresh_from_db()
    deadline = time.monotonic() + 3 * device.step
    while True:
        now = _step_now(device)
        wanted = max(now, device.last_t + 1)
        if wanted <= now + device.drift + device.tolerance:
            break
        if time.monotonic() > deadline:
            raise AssertionError("the TOTP clock did not advance")
        time.sleep((device.step - (time.time() - device.t0) % device.step) + 0.05)
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits)
    totp.time = device.t0 + wanted * device.step
    return f"{totp.token():0{device.digits}d}"


def code_for_key(hex_key: str) -> str:
    """The current code of an authenticator set up from a key (e.g. the one shown on the
    enrolment page)."""
    probe = TOTPDevice(key=hex_key)
    totp = TOTP(probe.bin_key, probe.step, probe.t0, probe.digits)
    return f"{totp.token():0{probe.digits}d}"


def enrol_authenticator(user: AbstractBaseUser) -> tuple[TOTPDevice, list[str]]:
    """Set up the user's authenticator as the enrolment page does; returns it and the
    backup codes."""
    device = services.two_factor_enrolment_start(user=user)
    codes = services.two_factor_enrolment_confirm(
        user=user, device=device, token=authenticator_code(device)
    )
    device.refresh_from_db()
    return device, codes


def authenticator_of(user: AbstractBaseUser) -> TOTPDevice:
    device = TOTPDevice.objects.devices_for_user(user, confirmed=True).first()
    if device is None:
        device, _ = enrol_authenticator(user)
    return device


class TwoFactorClient(Client):
    """A test client whose force_login also completes the second factor.

    Like Django's force_login skips typing the password, this skips typing the code: the
    session is verified by the user's real, confirmed TOTP device exactly as
    django_otp.login does after a correct code, and OTPMiddleware checks it on every
    request as in production."""

    def force_login(self, user, backend=None):
        super().force_login(user, backend)
        self.verify_second_factor(user)

    def verify_second_factor(self, user) -> None:
        request = HttpRequest()
        request.session = self.session
        request.user = user
        otp_login(request, authenticator_of(user))
        request.session.save()


# --- In the browser (Playwright pages) ------------------------------------------------------


def enrol_in_browser(page) -> list[str]:
    """On the enrolment page: read the key it shows (as a person types it into an app),
    type the app's current code, keep the backup codes shown once, continue."""
    secret = page.inner_text("#totp-secret").replace(" ", "")
    page.fill("#id_otp_token", code_for_key(b32decode(secret).hex()))
    page.click("#two-factor-setup-form input[type=submit]")
    page.wait_for_selector("#backup-codes")
    codes = [code.strip() for code in page.locator("#backup-codes code").all_inner_texts()]
    page.click("#two-factor-continue")
    page.wait_for_selector("#site-name")
    return codes


def sign_in(page, base_url: str, username: str, password: str, code: str | None = None):
    """Sign in through the real login form: password, then the authenticator code computed
    from the user's device (or the given code); a user without one enrols on the way."""
    user = get_user_model().objects.get(username=username)
    device = TOTPDevice.objects.devices_for_user(user, confirmed=True).first()
    page.goto(f"{base_url}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    if code is None and device is not None:
        code = authenticator_code(device)
    if code is not None:
        page.fill("#id_otp_token", code)
    with page.expect_navigation():
        page.click("#login-form input[type=submit]")
    if "/admin/two-factor/setup/" in page.url:
        enrol_in_browser(page)
    page.wait_for_selector("#site-name")
    return page
