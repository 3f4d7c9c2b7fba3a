"""The API's one router. Domain apps register their viewsets from AppConfig.ready():

    from opsportal.api.routing import api_register
    api_register("incidents", IncidentViewSet, basename="incident")

opsportal/api/urls.py serves whatever is registered under /api/v1/."""

from __future__ import annotations

from rest_framework.routers import SimpleRouter

router = SimpleRouter(trailing_slash=True)


def api_register(prefix: str, viewset, *, basename: str) -> None:
    if any(registered == prefix for registered, _, _ in router.registry):
        return  # ready() may run twice (tests that reload apps)
    router.register(prefix, viewset, basename=basename)
