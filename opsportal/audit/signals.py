from opsportal.audit.models import AuditAction, AuditOutcome
from opsportal.audit.services import audit_record


def on_login(sender, request, user, **kwargs):
    audit_record(action=AuditAction.LOGIN, obj=user, actor=user, message="Logged in")


def on_login_failed(sender, credentials, request=None, **kwargs):
    username = str(credentials.get("username", ""))[:150]
    audit_record(
        action=AuditAction.LOGIN_FAILED,
        object_type="auth.user",
        object_repr=username,
        outcome=AuditOutcome.FAILURE,
        message=f"Failed login for {username!r}",
    )
