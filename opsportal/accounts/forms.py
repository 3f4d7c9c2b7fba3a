from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.signals import user_login_failed

from opsportal.accounts.services import two_factor_is_set_up, two_factor_verify

CODE_HELP = (
    "The 6-digit code your authenticator app shows, or one of your backup codes. "
    "Leave it empty if you have not set up two-factor sign-in yet."
)


def code_field(*, required: bool, help_text: str = "") -> forms.CharField:
    return forms.CharField(
        label="Authentication code",
        required=required,
        max_length=32,
        strip=True,
        help_text=help_text,
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "autocapitalize": "none", "size": 12}
        ),
    )


class TwoFactorAuthenticationForm(AdminAuthenticationForm):
    """The admin login: password, then the second factor of a user who has one.

    A wrong code gets the same message as a wrong password (an attacker holding a password
    learns nothing), counts as a failed login for django-axes and the audit history, and
    is throttled per device by django-otp."""

    otp_token = code_field(required=False, help_text=CODE_HELP)

    error_messages = {
        **AdminAuthenticationForm.error_messages,
        "invalid_login": (
            "Please enter the correct %(username)s, password and authentication code for a "
            "staff account. Note that the fields may be case-sensitive."
        ),
    }

    def clean(self):
        cleaned = super().clean()
        user = self.user_cache
        if user is not None and two_factor_is_set_up(user=user):
            device = two_factor_verify(user=user, token=cleaned.get("otp_token", ""))
            if device is None:
                user_login_failed.send(
                    sender=__name__,
                    credentials={"username": user.get_username()},
                    request=self.request,
                )
                self.user_cache = None
                raise self.get_invalid_login_error()
            # django_otp's user_logged_in receiver marks the new session verified by it.
            user.otp_device = device
        return cleaned


class CodeForm(forms.Form):
    otp_token = code_field(required=True)
