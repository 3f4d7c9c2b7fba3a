from django.apps import AppConfig


class OpsPortalConfig(AppConfig):
    name = "opsportal"
    verbose_name = "OpsPortal"

    def ready(self) -> None:
        from django_celery_beat.models import PeriodicTask

        from opsportal.converters import bounded_model_choices_install, converters_register

        # Before any URLconf is read: admin get_urls() of every app use <id:...>.
        converters_register()
        bounded_model_choices_install()

        from opsportal.audit.services import audit_register

        # Changing a schedule changes what runs in production (backups, collection,
        # sweepers); beat's own bookkeeping on every run is left out.
        audit_register(
            PeriodicTask, exclude_fields=["last_run_at", "total_run_count", "date_changed"]
        )
