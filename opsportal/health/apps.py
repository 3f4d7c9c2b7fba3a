from django.apps import AppConfig


class HealthConfig(AppConfig):
    name = "opsportal.health"
    label = "health"
    verbose_name = "Health and metrics"
