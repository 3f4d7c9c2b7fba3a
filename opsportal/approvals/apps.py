from django.apps import AppConfig


class ApprovalsConfig(AppConfig):
    name = "opsportal.approvals"
    label = "approvals"
    verbose_name = "Two-person approval"

    def ready(self) -> None:
        from opsportal.approvals.models import ApprovalPolicy
        from opsportal.audit.services import audit_register

        # Who made an operation kind need approval, or stop needing it, is recorded.
        audit_register(ApprovalPolicy)
