from django.apps import AppConfig


class PeopleConfig(AppConfig):
    name = "opsportal.people"
    label = "people"
    verbose_name = "People and paging"

    def ready(self) -> None:
        from opsportal.audit.services import audit_register
        from opsportal.people import models

        for model in (models.Team, models.Contact, models.OnCallRotation, models.OnCallOverride):
            audit_register(model)
        audit_register(models.WebhookChannel, secret_fields=["url"])
