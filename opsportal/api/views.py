"""The base every API viewset extends: token-only authentication, the role permissions, the
per-token throttle, audit context and an audit record for each change made with a token."""

from __future__ import annotations

from rest_framework import exceptions, viewsets
from rest_framework.filters import SearchFilter
from rest_framework.permissions import SAFE_METHODS

from opsportal.api.authentication import ApiTokenAuthentication
from opsportal.api.models import ApiToken
from opsportal.api.permissions import RolePermission, TokenScopePermission
from opsportal.api.serializers import text_problem
from opsportal.api.services import api_token_record_use
from opsportal.api.throttling import TokenRateThrottle
from opsportal.audit import context
from opsportal.audit.middleware import client_address
from opsportal.audit.models import AuditSource


class ApiViewSetMixin:
    authentication_classes = [ApiTokenAuthentication]
    permission_classes = [TokenScopePermission, RolePermission]
    throttle_classes = [TokenRateThrottle]
    required_permissions: dict[str, list[str]] = {}
    # Query parameters a list or action reads itself, beside its filters and pagination.
    extra_query_parameters: tuple[str, ...] = ()

    @classmethod
    def as_view(cls, *args, **kwargs):
        view = super().as_view(*args, **kwargs)
        # The token is the credential, checked by DRF: not the admin's sign-in redirect.
        view.login_required = False
        return view

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if isinstance(request.auth, ApiToken):
            # The audit middleware ran before DRF knew the user: name them for the records
            # the services write during this request.
            context.set_current(
                actor=request.user, source=AuditSource.API, remote_addr=client_address(request)
            )
        for name, values in request.query_params.lists():
            problem = text_problem(name) or text_problem(values)
            if problem:
                raise exceptions.ValidationError({name: [problem]})
        if request.method == "GET" and not self.detail:
            self._refuse_unknown_query_parameters()

    def _refuse_unknown_query_parameters(self) -> None:
        """A list asked with a parameter it does not take is a 400 naming the ones it takes:
        a misspelt filter (?stauts=open) must not answer with every row. It takes its
        filters, its search, its pagination and the `extra_query_parameters` its view
        declares; the OpenAPI schema documents the same."""
        known: set[str] = set(self.extra_query_parameters)
        filterset_class = getattr(self, "filterset_class", None)
        if filterset_class is not None:
            known |= set(filterset_class.base_filters)
        for backend in self.filter_backends:
            if issubclass(backend, SearchFilter) and getattr(self, "search_fields", None):
                known.add(backend.search_param)
        paginator = self.paginator
        if paginator is not None:
            known |= {
                name
                for name in (
                    getattr(paginator, "cursor_query_param", None),
                    getattr(paginator, "page_size_query_param", None),
                )
                if name
            }
        unknown = sorted(set(self.request.query_params) - known)
        if unknown:
            takes = ", ".join(sorted(known)) or "no parameters"
            raise exceptions.ValidationError(
                {name: [f"Unknown parameter; this list takes: {takes}."] for name in unknown}
            )

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        token = getattr(request, "auth", None)
        if request.method not in SAFE_METHODS and isinstance(token, ApiToken):
            api_token_record_use(
                token=token,
                method=request.method,
                path=request.path,
                status=response.status_code,
            )
        return response


class ApiReadOnlyViewSet(ApiViewSetMixin, viewsets.ReadOnlyModelViewSet):
    lookup_value_regex = "[0-9]{1,18}"


class ApiGenericViewSet(ApiViewSetMixin, viewsets.GenericViewSet):
    lookup_value_regex = "[0-9]{1,18}"


class NdjsonRenderer:
    """Lets a request that accepts only application/x-ndjson reach a streaming export (the
    export streams its own body; errors are rendered as one JSON line)."""

    media_type = "application/x-ndjson"
    format = "ndjson"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        import json

        return (json.dumps(data) + "\n").encode() if data is not None else b""
