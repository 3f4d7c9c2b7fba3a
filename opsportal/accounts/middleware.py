"""Session lifetime and the two-factor requirement, enforced on every request."""

import time
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.shortcuts import redirect

from opsportal.accounts.services import two_factor_is_set_up

SIGNED_IN_AT = "opsportal_signed_in_at"
LAST_SEEN_AT = "opsportal_last_seen_at"


def session_started(sender, request, user, **kwargs):
    """user_logged_in receiver (connected in AccountsConfig.ready): the clocks start."""
    now = time.time()
    request.session[SIGNED_IN_AT] = now
    request.session[LAST_SEEN_AT] = now


class SessionLifetimeMiddleware:
    """Signs a session out after SESSION_IDLE_TIMEOUT_SECONDS without a request, and
    SESSION_ABSOLUTE_TIMEOUT_SECONDS after sign-in whatever its activity.

    Both times are stored in the session itself (server-side), so neither depends on the
    browser honouring a cookie's expiry."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.user.is_authenticated:
            self._check(request)
        return self.get_response(request)

    def _check(self, request) -> None:
        session = request.session
        now = time.time()
        signed_in_at = session.setdefault(SIGNED_IN_AT, now)
        last_seen_at = session.get(LAST_SEEN_AT, now)
        idle = settings.SESSION_IDLE_TIMEOUT_SECONDS
        absolute = settings.SESSION_ABSOLUTE_TIMEOUT_SECONDS
        if now - signed_in_at > absolute:
            reason = f"you signed in more than {_duration(absolute)} ago"
        elif now - last_seen_at > idle:
            reason = f"there was no activity for {_duration(idle)}"
        else:
            # Writing the session on every request would cost a database write per page;
            # to a tenth of the idle time (at most a minute) is precise enough.
            if now - last_seen_at >= min(60, idle / 10) or LAST_SEEN_AT not in session:
                session[LAST_SEEN_AT] = now
            return
        logout(request)
        messages.info(request, f"You were signed out because {reason}. Please sign in again.")


def _duration(seconds: float) -> str:
    for unit, size in (("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds >= size:
            amount = seconds / size
            return f"{amount:g} {unit}{'' if amount == 1 else 's'}"
    return f"{seconds:g} seconds"


# Views an authenticated session may reach before its second factor is verified.
_OPEN_BEFORE_SECOND_FACTOR = {
    "admin:login",
    "admin:logout",
    "admin:jsi18n",
    "accounts:two_factor_setup",
    "accounts:two_factor_verify",
}


class TwoFactorRequiredMiddleware:
    """With OPSPORTAL_REQUIRE_2FA, a signed-in session does nothing until its second factor
    is verified: a user without an authenticator is sent to set one up, a user with one
    to enter a code (e.g. a session from before two-factor was required, or after a reset)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        if not settings.OPSPORTAL_REQUIRE_2FA:
            return None
        user = request.user
        if not user.is_authenticated or user.is_verified():
            return None
        match = request.resolver_match
        if match is not None and match.view_name in _OPEN_BEFORE_SECOND_FACTOR:
            return None
        target = (
            "accounts:two_factor_verify"
            if two_factor_is_set_up(user=user)
            else "accounts:two_factor_setup"
        )
        response = redirect(target)
        response["Location"] += "?" + urlencode({"next": request.get_full_path()})
        return response
