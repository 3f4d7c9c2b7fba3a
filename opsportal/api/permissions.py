"""Who may call an endpoint: the same Django permissions the admin checks, per action.

A viewset declares `required_permissions = {"list": ["incidents.view_incident"], ...}`
(action name -> permissions, all needed; "*" is the default for actions not named). A
read-only token is refused every method that changes something, whatever its owner may do.
"""

from __future__ import annotations

from rest_framework import exceptions, permissions

from opsportal.api.models import ApiToken


class TokenScopePermission(permissions.BasePermission):
    message = "This API token is read-only; create a read-write token to make changes."

    def has_permission(self, request, view) -> bool:
        token = request.auth
        if not isinstance(token, ApiToken) or not request.user.is_authenticated:
            raise exceptions.NotAuthenticated(
                "Send an API token as 'Authorization: Bearer <token>' (create one in the "
                "admin under API tokens)."
            )
        return request.method in permissions.SAFE_METHODS or not token.read_only


def required_permissions(view) -> list[str]:
    table = getattr(view, "required_permissions", {})
    action = getattr(view, "action", None)
    if action in table:
        return list(table[action])
    if "*" in table:
        return list(table["*"])
    # An endpoint that forgot to declare is closed, not open.
    return ["api.undeclared_endpoint"]


class RolePermission(permissions.BasePermission):
    """The owner's role permissions, as the admin checks them."""

    def has_permission(self, request, view) -> bool:
        needed = required_permissions(view)
        missing = [p for p in needed if not request.user.has_perm(p)]
        if missing:
            raise exceptions.PermissionDenied(
                f"You need the permission {' and '.join(repr(p) for p in missing)} for this."
            )
        return True
