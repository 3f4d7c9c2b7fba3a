"""Two-factor sign-in: enrolling an authenticator app, backup codes, verifying, resetting.

A user's devices are django-otp rows: one confirmed TOTP device (the authenticator app)
and one static device holding the unused backup codes. Every change here is audited on
the user it concerns; secrets (the TOTP key, the codes) never reach an audit record.
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django_otp.models import Device
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from opsportal.audit.models import AuditAction
from opsportal.audit.services import audit_record
from opsportal.refusals import ServiceRefused

BACKUP_CODE_COUNT = 10
AUTHENTICATOR_NAME = "Authenticator app"
BACKUP_CODES_NAME = "Backup codes"


class TwoFactorRefused(ServiceRefused):
    """The two-factor change was refused; the message says why, for the person asking."""


def _confirmed_totp(user: AbstractBaseUser):
    return TOTPDevice.objects.devices_for_user(user, confirmed=True)


def two_factor_is_set_up(*, user: AbstractBaseUser) -> bool:
    return _confirmed_totp(user).exists()


def backup_codes_left(*, user: AbstractBaseUser) -> int:
    return StaticToken.objects.filter(device__user=user, device__confirmed=True).count()


def two_factor_enrolment_start(*, user: AbstractBaseUser) -> TOTPDevice:
    """The unconfirmed authenticator the user is scanning (the same one on a page reload)."""
    device = TOTPDevice.objects.devices_for_user(user, confirmed=False).order_by("-id").first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name=AUTHENTICATOR_NAME, confirmed=False)
    return device


def two_factor_enrolment_confirm(
    *, user: AbstractBaseUser, device: TOTPDevice, token: str
) -> list[str]:
    """Confirm the scanned authenticator with a code it shows; returns fresh backup codes.

    A confirmed authenticator replaces any earlier one (a new phone)."""
    if device.user_id != user.pk or device.confirmed:
        raise TwoFactorRefused("This enrolment is not open any more: start again.")
    # A wrong code is committed as a throttled failure before refusing.
    with transaction.atomic():
        device = TOTPDevice.objects.select_for_update().get(pk=device.pk)
        verified = device.verify_token(_normalise(token))
    if not verified:
        raise TwoFactorRefused(
            "That code does not match: check the phone's clock and type the code the app shows now."
        )
    with transaction.atomic():
        replaced = _confirmed_totp(user).count()
        _confirmed_totp(user).delete()
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        TOTPDevice.objects.devices_for_user(user, confirmed=False).delete()
        codes = _backup_codes_replace(user=user)
        audit_record(
            action=AuditAction.CHANGE,
            obj=user,
            actor=user,
            message="Two-factor sign-in set up (authenticator app replaced)"
            if replaced
            else "Two-factor sign-in set up",
        )
    return codes


def backup_codes_regenerate(*, user: AbstractBaseUser) -> list[str]:
    """New backup codes for a user with an authenticator; the old ones stop working."""
    if not two_factor_is_set_up(user=user):
        raise TwoFactorRefused("Set up an authenticator app first.")
    with transaction.atomic():
        codes = _backup_codes_replace(user=user)
        audit_record(
            action=AuditAction.CHANGE,
            obj=user,
            actor=user,
            message="Backup codes regenerated (the previous ones no longer work)",
        )
    return codes


def _backup_codes_replace(*, user: AbstractBaseUser) -> list[str]:
    device, _ = StaticDevice.objects.get_or_create(
        user=user, name=BACKUP_CODES_NAME, defaults={"confirmed": True}
    )
    device.token_set.all().delete()
    codes = [StaticToken.random_token() for _ in range(BACKUP_CODE_COUNT)]
    StaticToken.objects.bulk_create(StaticToken(device=device, token=code) for code in codes)
    return codes


def _normalise(token: str) -> str:
    return "".join(str(token or "").split()).lower()


def two_factor_verify(*, user: AbstractBaseUser, token: str) -> Device | None:
    """The device that accepts this code (and records its use), or None.

    Six or eight digits are an authenticator code; anything else is tried as a backup code,
    which then stops working. Each device throttles its own wrong guesses."""
    token = _normalise(token)
    if not token or user.pk is None:
        return None
    if token.isdigit() and len(token) in (6, 8):
        candidates = TOTPDevice.objects.devices_for_user(user, confirmed=True)
    else:
        candidates = StaticDevice.objects.devices_for_user(user, confirmed=True)
    with transaction.atomic():
        for device in candidates.select_for_update():
            if device.verify_token(token):
                return device
    return None


def two_factor_reset(*, user: AbstractBaseUser, actor: AbstractBaseUser, reason: str) -> int:
    """Remove every second factor of a user (a lost phone); only a superuser may.

    The user's sessions verified with the removed device stop being verified, so the user
    sets up a new authenticator at the next request."""
    if not getattr(actor, "is_superuser", False):
        raise TwoFactorRefused("Only a superuser may reset another person's two-factor sign-in.")
    reason = reason.strip()
    if not reason:
        raise TwoFactorRefused("Say why the two-factor sign-in is reset (it is audited).")
    with transaction.atomic():
        removed = 0
        for model in (TOTPDevice, StaticDevice):
            devices = model.objects.filter(user=user)
            removed += devices.count()
            devices.delete()
        audit_record(
            action=AuditAction.CHANGE,
            obj=user,
            actor=actor,
            changes={"two_factor": ["set up" if removed else "not set up", "reset"]},
            message=f"Two-factor sign-in reset by {actor.get_username()}: {reason}",
        )
    return removed
