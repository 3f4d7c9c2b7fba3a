from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "opsportal.monitoring"
    label = "monitoring"
