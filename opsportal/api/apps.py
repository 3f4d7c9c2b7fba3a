from django.apps import AppConfig


class ApiConfig(AppConfig):
    """Personal API tokens. The endpoints are registered when the URLs load (opsportal/urls.py),
    not here: workers, beat and commands never import the REST framework."""

    name = "opsportal.api"
    label = "api"
    verbose_name = "API tokens"
