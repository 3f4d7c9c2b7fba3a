"""Who is acting: a person, or the portal itself.

Services take `actor=` from every kind of caller: a signed-in user from the admin, `None` or
an anonymous user from a worker, a schedule or a webhook. Only a saved user can be stored as
who did something (a foreign key) or be asked for permissions; everything else is the system
acting on its own."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def acting_user(actor: object | None) -> User | None:
    """The user behind `actor`, or None when no person is acting (a worker, a schedule, an
    anonymous visitor: anything without a saved row)."""
    return actor if getattr(actor, "pk", None) else None  # type: ignore[return-value]


def acting_name(actor: object | None, *, otherwise: str) -> str:
    """The acting user's username for messages, or `otherwise` (e.g. "the system")."""
    user = acting_user(actor)
    return user.get_username() if user is not None else otherwise


def actor_require(actor: object | None, permission: str, *, doing: str = "") -> None:
    """Refuse a person who lacks `permission` (PermissionDenied, with what they tried to do);
    the portal acting on its own (a worker, a schedule, an alert) is not asked. The one
    permission check every service makes before it changes anything."""
    from django.core.exceptions import PermissionDenied

    if acting_user(actor) is not None and not actor.has_perm(permission):  # type: ignore[union-attr]
        raise PermissionDenied(
            f"You need the permission {permission!r} " + (f"to {doing}." if doing else "for this.")
        )
