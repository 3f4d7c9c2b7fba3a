"""Secrets of registered systems, encrypted at rest with Fernet."""

import base64
import hashlib
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.db import models


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


class EncryptedTextField(models.TextField):
    """A text column stored encrypted; empty stays empty so "no secret" is visible."""

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
