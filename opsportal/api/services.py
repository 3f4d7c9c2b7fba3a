"""Creating, checking and revoking personal API tokens. Each change writes an audit record
with source "API"; a token is checked against its owner on every request, so it never does
more than the owner may and stops working when the owner is deactivated."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import secrets

from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.utils import timezone

from opsportal.actors import acting_user
from opsportal.api.models import ApiToken, TokenScope
from opsportal.audit.models import AuditAction, AuditOutcome, AuditSource
from opsportal.audit.services import audit_record
from opsportal.refusals import ServiceRefused

# "ops_" + 8 characters of prefix + "_" + 43 characters of secret (256 bits).
TOKEN_MARK = "ops_"  # noqa: S105 (the mark every token starts with, not a secret)
PREFIX_LENGTH = 8
# The last-used stamp is written at most this often per token (a read every second from a
# pipeline should not be a database write every second).
LAST_USED_PRECISION = dt.timedelta(seconds=60)

logger = logging.getLogger(__name__)


class TokenRefused(ServiceRefused):
    """A token cannot be created or revoked as asked; `message` says why."""


class TokenInvalid(Exception):
    """The presented token does not authenticate; the message says why (for the 401)."""


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def api_token_expiry_check(expires_at: dt.datetime | None) -> None:
    """A new token's expiry is a time to come, or none (TokenRefused otherwise)."""
    if expires_at is not None and expires_at <= timezone.now():
        raise TokenRefused("The expiry is in the past: choose a time from now on, or none.")


def api_token_create(
    *,
    user,
    name: str,
    scope: str = TokenScope.READ,
    expires_at: dt.datetime | None = None,
    actor=None,
) -> tuple[ApiToken, str]:
    """Create a token for `user` (by `user` themselves, or a superuser); returns the row and
    the token in clear, which is shown once and never stored."""
    actor = acting_user(actor) or acting_user(user)
    if actor is None or (actor.pk != user.pk and not actor.is_superuser):
        raise PermissionDenied("An API token is created by its owner (or a superuser).")
    if not user.is_active:
        raise TokenRefused(f"{user.get_username()} is deactivated and cannot hold API tokens.")
    name = (name or "").strip()
    if not name:
        raise TokenRefused("Give the token a name that says what uses it.")
    if scope not in TokenScope.values:
        raise TokenRefused(f"{scope!r} is not a token scope; choose read or read_write.")
    api_token_expiry_check(expires_at)
    while True:
        prefix = secrets.token_urlsafe(6)[:PREFIX_LENGTH].replace("_", "x").replace("-", "y")
        if not ApiToken.objects.filter(prefix=prefix).exists():
            break
    secret = secrets.token_urlsafe(32)
    plain = f"{TOKEN_MARK}{prefix}_{secret}"
    token = ApiToken.objects.create(
        user=user,
        name=name[:100],
        prefix=prefix,
        key_hash=_hash(plain),
        scope=scope,
        expires_at=expires_at,
    )
    audit_record(
        action=AuditAction.CREATE,
        obj=token,
        actor=actor,
        source=AuditSource.API,
        message=f"API token {token} created for {user.get_username()} "
        f"({token.get_scope_display().lower()}"
        + (f", expires {expires_at:%Y-%m-%d %H:%M %Z}" if expires_at else ", no expiry")
        + ")",
        changes={"name": [None, token.name], "scope": [None, scope]},
    )
    return token, plain


def api_token_revoke(*, token: ApiToken, actor) -> ApiToken:
    """Revoke a token (its owner or a superuser); a revoked token never works again."""
    actor = acting_user(actor)
    if actor is None or (actor.pk != token.user_id and not actor.is_superuser):
        raise PermissionDenied("An API token is revoked by its owner (or a superuser).")
    updated = ApiToken.objects.filter(pk=token.pk, revoked_at=None).update(
        revoked_at=timezone.now(), revoked_by=actor
    )
    if not updated:
        raise TokenRefused(f"API token {token} is already revoked.")
    token.refresh_from_db()
    audit_record(
        action=AuditAction.OPERATION,
        obj=token,
        actor=actor,
        source=AuditSource.API,
        message=f"API token {token} of {token.user.get_username()} revoked",
        changes={"revoked_at": [None, token.revoked_at.isoformat()]},
    )
    return token


def api_token_authenticate(*, presented: str, remote_addr: str | None = None) -> ApiToken:
    """The token row (with its user) for a presented token, or TokenInvalid saying why."""
    if not presented.startswith(TOKEN_MARK):
        raise TokenInvalid("This is not an OpsPortal API token (they start with 'ops_').")
    prefix, _, secret = presented[len(TOKEN_MARK) :].partition("_")
    if len(prefix) != PREFIX_LENGTH or not secret:
        raise TokenInvalid("The API token is malformed.")
    token = ApiToken.objects.select_related("user").filter(prefix=prefix).first()
    if token is None or not hmac.compare_digest(token.key_hash, _hash(presented)):
        raise TokenInvalid("The API token is not valid.")
    now = timezone.now()
    state = token.state(now)
    if state == "revoked":
        raise TokenInvalid(f"The API token {token.prefix}… was revoked.")
    if state == "expired":
        raise TokenInvalid(
            f"The API token {token.prefix}… expired at {token.expires_at:%Y-%m-%d %H:%M %Z}."
        )
    user = token.user
    if not user.is_active or not user.is_staff:
        raise TokenInvalid(f"The owner of API token {token.prefix}… can no longer sign in.")
    if (
        token.last_used_at is None
        or now - token.last_used_at >= LAST_USED_PRECISION
        or token.last_used_from != remote_addr
    ):
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now, last_used_from=remote_addr)
        token.last_used_at, token.last_used_from = now, remote_addr
    return token


def api_token_record_use(
    *, token: ApiToken, method: str, path: str, status: int, actor=None
) -> None:
    """Audit a change made with a token: which token, what request, what answer. Writes
    refused for the token's rate (429) are recorded once a minute per token: each record
    takes the audit chain's lock, so a client hammering past its limit must not be able to
    slow every change in the portal."""
    if status == 429:
        try:
            first_this_minute = cache.add(f"api:throttled-recorded:{token.pk}", 1, timeout=60)
        except Exception:
            logger.warning("The cache is unreachable: a throttled write is recorded", exc_info=True)
            first_this_minute = True
        if not first_this_minute:
            return
    audit_record(
        action=AuditAction.OPERATION,
        obj=token,
        actor=actor or token.user,
        source=AuditSource.API,
        outcome=AuditOutcome.SUCCESS if status < 400 else AuditOutcome.FAILURE,
        message=f"API token {token} used: {method} {path[:200]} → {status}"
        + (
            " (its further writes refused for its rate this minute are not recorded)"
            if status == 429
            else ""
        ),
    )
