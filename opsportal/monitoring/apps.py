from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "opsportal.monitoring"
    label = "monitoring"
    verbose_name = "Monitoring and alerting"

    def ready(self) -> None:
        from opsportal.audit.services import audit_register
        from opsportal.health.checks import register_check
        from opsportal.health.metrics import register_gauges
        from opsportal.monitoring import exports, models

        audit_register(models.AlertRule, exclude_fields=["updated_at"])
        audit_register(
            models.CollectionSchedule,
            exclude_fields=[
                "next_due_at",
                "lease_until",
                "last_started_at",
                "last_finished_at",
                "last_ok",
                "last_error",
                "last_duration_ms",
            ],
        )
        register_gauges(exports.monitoring_gauges)
        # Alert rules are configuration: backed up to Git with the rest (issue "Configuration
        # Backups"); the systems they name are referred to by name.
        from backups import configuration

        configuration.register_defaults()
        configuration.register(models.AlertRule)
        register_check("monitoring", exports.collector_checks)
