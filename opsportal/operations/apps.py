from django.apps import AppConfig


class OperationsConfig(AppConfig):
    name = "opsportal.operations"
    label = "operations"
