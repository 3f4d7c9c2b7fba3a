from django.apps import AppConfig


class IncidentsConfig(AppConfig):
    name = "incidents"

    def ready(self) -> None:
        from incidents.overview import overview_incidents
        from opsportal.monitoring.selectors import overview_section_register

        overview_section_register("incidents", overview_incidents)
        from incidents import metrics
        from incidents.models import ActionItem, Incident, Runbook, RunbookStep
        from incidents.services import alert_receive, incidents_load_defaults, on_operation_finished
        from opsportal.audit.services import audit_register
        from opsportal.defaults import defaults_loader_register
        from opsportal.health.metrics import register_gauges
        from opsportal.monitoring.handoff import alert_receiver_register
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
        # Two-person approval of an incident's operations: decisions on the timeline.
        from incidents.services.runbooks import on_approval_decided
        from opsportal.approvals.signals import approval_decided

        approval_decided.connect(on_approval_decided, dispatch_uid="incidents-approvals")
        # The runbooks exist before the operations and alert rules that name them.
        defaults_loader_register("incidents", incidents_load_defaults, order=50)
        # Monitoring hands its firing and cleared alerts to incident handling.
        alert_receiver_register(alert_receive)
        register_gauges(metrics.incident_gauges)
        # Public incidents and their public updates feed the status page.
        from incidents.services.public import IncidentsPublicSource
        from opsportal.statuspage.sources import public_source_register

        public_source_register("incidents", IncidentsPublicSource())
        # Escalation until acknowledged (incidents/services/escalation.py): the policies are
        # configuration, audited as edited; the runbook's default policies after the teams.
        from incidents.models import EscalationPolicy, EscalationStep
        from incidents.services.escalation import (
            escalation_load_defaults,
            on_notification_attempted,
        )
        from opsportal.people.signals import notification_attempted

        audit_register(EscalationPolicy)
        audit_register(EscalationStep)
        defaults_loader_register("escalation", escalation_load_defaults, order=55)
        notification_attempted.connect(on_notification_attempted, dispatch_uid="incident-pages")

        # The runbooks are configuration (the runbook's "Configuration Backups"): exported
        # to Git with their steps, which are identified by runbook and position.
        from opsportal import configuration

        # After the shared layer's configuration, in the order an import needs it.
        configuration.register_defaults()
        configuration.register(Runbook)
        configuration.register(RunbookStep, key=("runbook", "position"))
