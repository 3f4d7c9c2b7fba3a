from django.apps import AppConfig


class AccountsConfig(AppConfig):
    """Signing in: two-factor devices, the admin login that asks for a code, session lifetime."""

    name = "opsportal.accounts"
    label = "accounts"
    verbose_name = "Sign-in"

    def ready(self) -> None:
        from django.contrib import admin
        from django.contrib.auth.signals import user_logged_in

        from opsportal.accounts.forms import TwoFactorAuthenticationForm
        from opsportal.accounts.middleware import session_started

        user_logged_in.connect(session_started, dispatch_uid="accounts-session-started")

        # The admin's own login page asks for the second factor.
        admin.site.login_form = TwoFactorAuthenticationForm
        admin.site.login_template = "accounts/login.html"
