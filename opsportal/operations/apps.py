from django.apps import AppConfig


class OperationsConfig(AppConfig):
    name = "opsportal.operations"
    label = "operations"

    def ready(self) -> None:
        from opsportal.health.metrics import register_gauges
        from opsportal.operations.metrics import operation_gauges

        register_gauges(operation_gauges)
        from opsportal.operations.approval import operations_approval_register

        operations_approval_register()
