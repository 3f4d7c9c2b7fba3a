"""/api/v1/ (whatever the domain apps registered), /api/schema/ and /api/docs/."""

from django.contrib.auth.decorators import login_required
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import IsAuthenticated

from opsportal.api import schema  # noqa: F401 (the token scheme, for the OpenAPI document)
from opsportal.api.authentication import ApiTokenAuthentication
from opsportal.api.errors import api_not_found
from opsportal.api.routing import router

app_name = "api"


class SchemaView(SpectacularAPIView):
    """The OpenAPI document, for a token (tools, Schemathesis) or a signed-in browser (the
    docs page); nobody else."""

    authentication_classes = [ApiTokenAuthentication, SessionAuthentication]
    permission_classes = [IsAuthenticated]

    @classmethod
    def as_view(cls, *args, **kwargs):
        view = super().as_view(*args, **kwargs)
        view.login_required = False
        return view


urlpatterns = [
    path("v1/", include(router.urls)),
    re_path(r"^v1/", api_not_found, name="not_found"),
    path("schema/", SchemaView.as_view(), name="schema"),
    # Swagger UI from drf-spectacular-sidecar (no CDN); the split view keeps its script in a
    # file of its own, as the Content-Security-Policy requires. Signed-in users only.
    path(
        "docs/",
        # DRF exempts its views from LoginRequiredMiddleware; this page is for signed-in
        # users, sent to the sign-in page otherwise like every admin page.
        login_required(SpectacularSwaggerSplitView.as_view(url_name="api:schema")),
        name="docs",
    ),
]
