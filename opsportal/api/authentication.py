"""`Authorization: Bearer ops_…`: the API's only credential (a browser session is not one,
so no cross-site request can act through the API and the session's second factor is not
bypassed)."""

from __future__ import annotations

from rest_framework import authentication, exceptions

from opsportal.api.services import TokenInvalid, api_token_authenticate
from opsportal.audit.middleware import client_address


class ApiTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = request.headers.get("Authorization", "")
        if not header.strip():
            return None
        scheme, _, presented = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise exceptions.AuthenticationFailed(
                "Send the API token as 'Authorization: Bearer <token>'."
            )
        try:
            token = api_token_authenticate(
                presented=presented.strip(), remote_addr=client_address(request)
            )
        except TokenInvalid as exc:
            raise exceptions.AuthenticationFailed(str(exc)) from None
        return token.user, token

    def authenticate_header(self, request) -> str:
        # Makes DRF answer 401 (not 403) to a request without credentials.
        return 'Bearer realm="api"'
