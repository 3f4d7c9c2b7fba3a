from django.apps import AppConfig


class IncidentsConfig(AppConfig):
    name = "incidents"

    def ready(self) -> None:
        from incidents.models import ActionItem, Incident, Runbook, RunbookStep
        from incidents.services import on_operation_finished
        from opsportal.audit.services import audit_register
        from opsportal.operations.signals import operation_finished

        # Workflow fields change only through services, which audit them with context;
        # the registry records the rest (creation, admin edits of text, team, review).
        audit_register(
            Incident,
            exclude_fields=[
                "status",
                "severity",
                "acknowledged_at",
                "mitigated_at",
                "resolved_at",
                "closed_at",
                "runbook",
            ],
        )
        audit_register(ActionItem)
        audit_register(Runbook)
        audit_register(RunbookStep)
        operation_finished.connect(on_operation_finished, dispatch_uid="incidents-timeline")

        # The runbooks are configuration (the runbook's "Configuration Backups"): exported
        # to Git with their steps, which are identified by runbook and position.
        from backups import configuration

        configuration.register(Runbook)
        configuration.register(RunbookStep, key=("runbook", "position"))
