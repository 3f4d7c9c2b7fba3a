from django.apps import AppConfig


class BackupsConfig(AppConfig):
    name = "backups"
    verbose_name = "Backup and recovery"

    def ready(self) -> None:
        from backups.overview import overview_backups
        from opsportal.monitoring.selectors import overview_section_register

        overview_section_register("backups", overview_backups)
        from backups.services import backups_load_defaults
        from opsportal.defaults import defaults_loader_register

        defaults_loader_register("backups", backups_load_defaults, order=120)
        # Two-person approval of restores: on by default (issue 14), another DBA approves.
        from backups.services.restores import restores_approval_register, restores_load_defaults

        restores_approval_register()
        defaults_loader_register("restore-approval", restores_load_defaults, order=121)
        from backups import audit_checkpoints, models, monitoring, services
        from opsportal import configuration
        from opsportal.audit.checkpoints import checkpoint_store_register
        from opsportal.audit.services import audit_register
        from opsportal.systems.signals import system_registered

        audit_register(models.BackupPlan, exclude_fields=["missed_reported_for", "periodic_task"])
        monitoring.register()
        configuration.register_defaults()
        configuration.register(
            models.BackupPlan,
            key=("database",),
            exclude=["periodic_task", "missed_reported_for"],
            # Re-saved through the service so its schedule entry is re-created with it.
            after_import=lambda plan: services.backup_plan_save(plan=plan),
        )
        # Every change to exported configuration becomes a commit of the repository.
        configuration.configuration_changed.connect(
            lambda sender, description, **kwargs: services.configuration_change_record(
                description=description
            ),
            dispatch_uid="backups-configuration-change",
            weak=False,
        )
        checkpoint_store_register(audit_checkpoints.ConfigurationRepositoryStore())
        # Post-incident review drafts are committed beside the configuration.
        from backups.documents import ConfigurationRepositoryDocuments
        from opsportal.documents import document_store_register

        document_store_register(ConfigurationRepositoryDocuments())
        # Every registered database gets a backup plan (the runbook: daily at 02:00 UTC).
        system_registered.connect(
            services.backup_plan_on_registration, dispatch_uid="backups-plan-on-registration"
        )
