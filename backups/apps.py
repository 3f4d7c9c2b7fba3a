from django.apps import AppConfig


class BackupsConfig(AppConfig):
    name = "backups"
    verbose_name = "Backup and recovery"

    def ready(self) -> None:
        from backups import audit_checkpoints, configuration, models, monitoring
        from opsportal.audit.checkpoints import checkpoint_store_register
        from opsportal.audit.services import audit_register

        audit_register(models.BackupPlan, exclude_fields=["missed_reported_for", "periodic_task"])
        monitoring.register()
        configuration.register_defaults()
        checkpoint_store_register(audit_checkpoints.ConfigurationRepositoryStore())
