from django.apps import AppConfig


class StatusPageConfig(AppConfig):
    name = "opsportal.statuspage"
    label = "statuspage"
    verbose_name = "Status page"

    def ready(self) -> None:
        from opsportal.audit.services import audit_register
        from opsportal.monitoring.signals import collection_finished
        from opsportal.statuspage import models, services

        audit_register(models.Component, exclude_fields=["state", "state_since", "state_reason"])
        # Each collection round (checks and alert states just changed) refreshes the
        # precomputed page; refreshing never fails the round.
        collection_finished.connect(
            services.on_collection_finished, dispatch_uid="statuspage-refresh"
        )
