from opsportal.audit.models import AuditAction, AuditOutcome
from opsportal.audit.services import audit_record


def on_login(sender, request, user, **kwargs):
    audit_record(action=AuditAction.LOGIN, obj=user, actor=user, message="Logged in")


# Usernames of failed logins come from anyone: at most a real username's length is kept.
FAILED_USERNAME_MAX_LENGTH = 150


def on_login_failed(sender, credentials, request=None, **kwargs):
    username = str(credentials.get("username", ""))
    if len(username) > FAILED_USERNAME_MAX_LENGTH:
        username = username[: FAILED_USERNAME_MAX_LENGTH - 1] + "…"
    audit_record(
        action=AuditAction.LOGIN_FAILED,
        object_type="auth.user",
        object_repr=username,
        outcome=AuditOutcome.FAILURE,
        message=f"Failed login for {username!r}",
    )
