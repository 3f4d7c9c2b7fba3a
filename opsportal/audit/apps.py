from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "opsportal.audit"
    label = "audit"
    verbose_name = "Audit history"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model
        from django.contrib.auth.models import Group
        from django.contrib.auth.signals import user_logged_in, user_login_failed

        from opsportal.audit import checks, signals  # noqa: F401 (checks register themselves)
        from opsportal.audit.services import audit_register

        audit_register(get_user_model(), secret_fields=["password"], exclude_fields=["last_login"])
        audit_register(Group)
        user_logged_in.connect(signals.on_login, dispatch_uid="audit-login")
        user_login_failed.connect(signals.on_login_failed, dispatch_uid="audit-login-failed")
