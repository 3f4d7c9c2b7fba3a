from django.apps import AppConfig


class MaintenanceConfig(AppConfig):
    name = "maintenance"
    verbose_name = "Maintenance"

    def ready(self) -> None:
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
        register_gauges(monitoring.gauges)
