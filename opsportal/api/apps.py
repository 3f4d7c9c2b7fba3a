from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "opsportal.api"
    label = "api"
    verbose_name = "API tokens"

    def ready(self) -> None:
        # Registers the token authentication with the OpenAPI schema generator.
        from opsportal.api import schema  # noqa: F401
