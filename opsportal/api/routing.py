"""The API's one router. Each app's api.py has a register() that puts its viewsets here:

    from opsportal.api.routing import api_register
    api_register("incidents", IncidentViewSet, basename="incident")

opsportal/urls.py (which may import domain apps) calls every register() before including
opsportal/api/urls.py, which serves whatever is registered under /api/v1/."""

from __future__ import annotations

from rest_framework.routers import SimpleRouter

router = SimpleRouter(trailing_slash=True)


def api_register(prefix: str, viewset, *, basename: str) -> None:
    if any(registered == prefix for registered, _, _ in router.registry):
        return  # registered already (a test that reloads the URLs)
    router.register(prefix, viewset, basename=basename)
