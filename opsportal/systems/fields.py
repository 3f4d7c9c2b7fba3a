"""Secrets of registered systems, encrypted at rest with Fernet."""

import base64
import hashlib
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.db import models
from django.db.models.query_utils import DeferredAttribute

# Instance attribute naming the secret fields assigned since the row was loaded or saved.
_ENTERED = "_secrets_entered"
_UNSET = object()


@lru_cache(maxsize=1)
def _fernet() -> MultiFernet:
    keys = list(settings.SECRETS_ENCRYPTION_KEYS)
    if not keys:
        # Only for the DEBUG try-out: with DEBUG off the settings refuse to start without
        # dedicated keys, so production secrets never depend on SECRET_KEY.
        digest = hashlib.sha256(("opsportal-secrets:" + settings.SECRET_KEY).encode()).digest()
        keys = [base64.urlsafe_b64encode(digest).decode()]
    return MultiFernet([Fernet(k.encode() if isinstance(k, str) else k) for k in keys])


class SecretDecryptionError(Exception):
    pass


class SecretAttribute(DeferredAttribute):
    """Remembers that a secret was assigned (typed in, set by code) rather than loaded.

    Re-pointing a system keeps its secret only if the secret was entered again with the
    change (see System.save), so the model must tell "entered" from "carried over"."""

    def __set__(self, instance, value):
        if instance.__dict__.get(self.field.attname, _UNSET) is value:
            # The very object it holds, put back (Model.clean_fields does that to every
            # field): nothing was entered.
            return
        instance.__dict__[self.field.attname] = value
        instance.__dict__[_ENTERED] = instance.__dict__.get(_ENTERED, frozenset()) | {
            self.field.attname
        }


def secrets_entered(instance: models.Model) -> frozenset[str]:
    """The secret fields assigned on `instance` since it was loaded or last saved."""
    return instance.__dict__.get(_ENTERED, frozenset())


def secrets_forget_entered(instance: models.Model, names: frozenset[str] | None = None) -> None:
    """The secrets (all, or `names`) now hold what is stored: loaded, refreshed or saved."""
    remaining = frozenset() if names is None else secrets_entered(instance) - names
    instance.__dict__[_ENTERED] = remaining


def secret_field_names(model: type[models.Model]) -> tuple[str, ...]:
    """Every field of `model` that holds a secret: its declared SECRET_FIELDS plus any
    encrypted field, so a secret added later is covered without being listed twice."""
    declared = tuple(getattr(model, "SECRET_FIELDS", ()))
    encrypted = tuple(
        f.name
        for f in model._meta.concrete_fields
        if isinstance(f, EncryptedTextField) and f.name not in declared
    )
    return declared + encrypted


class EncryptedTextField(models.TextField):
    """A text column stored encrypted; empty stays empty so "no secret" is visible."""

    descriptor_class = SecretAttribute

    def __init__(self, *args, multiline: bool = False, **kwargs):
        # A PEM key must keep its line breaks: its write-only field is then a text area
        # (a password input strips them in the browser). Presentation only, so it is
        # left out of deconstruct() and needs no migration.
        self.multiline = multiline
        super().__init__(*args, **kwargs)

    def from_db_value(self, value, expression, connection):
        if not value:
            return ""
        try:
            return _fernet().decrypt(value.encode()).decode()
        except InvalidToken as exc:
            raise SecretDecryptionError(
                "A stored secret cannot be decrypted: SECRETS_ENCRYPTION_KEYS (or SECRET_KEY) "
                "changed since it was saved. Re-enter the secret in the admin."
            ) from exc

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if not value:
            return ""
        return _fernet().encrypt(value.encode()).decode()
