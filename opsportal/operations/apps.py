from django.apps import AppConfig


class OperationsConfig(AppConfig):
    name = "opsportal.operations"
    label = "operations"

    def ready(self) -> None:
        from opsportal.operations.api import register as api_register

        # Its REST API endpoints, on the shared router (opsportal/api/routing.py).
        api_register()
        from opsportal.health.metrics import register_gauges
        from opsportal.operations.metrics import operation_gauges

        register_gauges(operation_gauges)
