from django.apps import AppConfig


class SystemsConfig(AppConfig):
    name = "opsportal.systems"
    label = "systems"
    verbose_name = "Systems"

    def ready(self) -> None:
        from django.db.models.signals import post_save

        from opsportal.audit.services import audit_register
        from opsportal.systems import log_redaction, models, services
        from opsportal.systems.fields import secret_field_names

        for model in (
            models.DockerEngine,
            models.PostgresDatabase,
            models.RedisCache,
            models.HttpEndpoint,
        ):
            audit_register(
                model,
                secret_fields=secret_field_names(model),
                exclude_fields=models.CHECK_STATE_FIELDS,
            )
            post_save.connect(
                services.system_saved, sender=model, dispatch_uid=f"registered-{model.__name__}"
            )
        log_redaction.install()
