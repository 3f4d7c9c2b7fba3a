from django.apps import AppConfig


class MaintenanceConfig(AppConfig):
    name = "maintenance"
    verbose_name = "Maintenance"

    def ready(self) -> None:
        from maintenance.overview import overview_maintenance
        from opsportal.monitoring.selectors import overview_section_register

        overview_section_register("maintenance", overview_maintenance)
        from maintenance.services import maintenance_load_defaults
        from opsportal.defaults import defaults_loader_register

        defaults_loader_register("maintenance", maintenance_load_defaults, order=110)
        from maintenance import models, monitoring
        from opsportal.audit.services import audit_register
        from opsportal.health.checks import register_check
        from opsportal.health.metrics import register_gauges

        # State fields change only through services, which write their own records.
        audit_register(
            models.MaintenanceWindow,
            exclude_fields=[
                "status",
                "started_at",
                "finished_at",
                "suppress_from",
                "suppress_until",
                "start_override_reason",
            ],
        )
        audit_register(models.MaintenancePlan)
        audit_register(models.RecurringTask)
        audit_register(models.CalendarSubscription, secret_fields=["token"])
        register_check("maintenance", monitoring.health_checks)
        # Public windows feed the status page.
        from maintenance.public import MaintenancePublicSource
        from opsportal.statuspage.sources import public_source_register

        public_source_register("maintenance", MaintenancePublicSource())
        register_gauges(monitoring.gauges)
        _register_configuration()


def _register_configuration() -> None:
    """Plans and recurring security tasks are configuration (the runbook's "Configuration
    Backups"): exported by name, re-created on import with their windows and due dates.
    Windows and occurrences are not: they are history, or derived again from the rules."""
    from maintenance import services
    from maintenance.models import MaintenancePlan, RecurringTask
    from opsportal import configuration

    # What ours point to (teams) must be registered, and so imported, before them.
    configuration.register_defaults()

    def generate_windows(plan: MaintenancePlan) -> None:
        services.plan_generate_windows(plan=plan)

    def generate_due_dates(task: RecurringTask) -> None:
        services.task_generate_occurrences(task=task)

    # The owner (a user account) and the webhook (its URL is a secret, not exported) are
    # left for the new portal's people to set.
    configuration.register(
        MaintenancePlan, exclude=["owner", "webhook"], after_import=generate_windows
    )
    configuration.register(RecurringTask, after_import=generate_due_dates)
