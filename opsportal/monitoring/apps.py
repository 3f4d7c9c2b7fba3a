from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "opsportal.monitoring"
    label = "monitoring"
    verbose_name = "Monitoring and alerting"

    def ready(self) -> None:
        from opsportal.audit.services import audit_register
        from opsportal.health.checks import register_check
        from opsportal.health.metrics import register_gauges
        from opsportal.monitoring import exports, models, selectors
        from opsportal.monitoring.signals import collection_finished

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
        # Alert rules are configuration too: the configuration backup (backups app) exports
        # them with the other shared-layer models it registers.
        register_check("monitoring", exports.collector_checks)
        collection_finished.connect(
            selectors.overview_series_refresh, dispatch_uid="overview-series-refresh"
        )
