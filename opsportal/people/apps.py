from django.apps import AppConfig


class PeopleConfig(AppConfig):
    name = "opsportal.people"
    label = "people"
    verbose_name = "People and paging"

    def ready(self) -> None:
        from opsportal.audit.services import audit_register
        from opsportal.people import models
        from opsportal.systems.fields import secret_field_names

        for model in (models.Team, models.Contact, models.OnCallRotation, models.OnCallOverride):
            audit_register(model)
        audit_register(
            models.WebhookChannel, secret_fields=secret_field_names(models.WebhookChannel)
        )
