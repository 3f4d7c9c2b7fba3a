from django.apps import AppConfig


class SystemsConfig(AppConfig):
    name = "opsportal.systems"
    label = "systems"
    verbose_name = "Systems"

    def ready(self) -> None:
        from opsportal.audit.services import audit_register
        from opsportal.systems import log_redaction, models
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
        log_redaction.install()
