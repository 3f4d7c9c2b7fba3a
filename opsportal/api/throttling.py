"""Per-token rate limiting: API_TOKEN_RATE requests per token (default 1200/min); over it
the API answers 429 with Retry-After."""

from __future__ import annotations

from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle

from opsportal.api.models import ApiToken


class TokenRateThrottle(SimpleRateThrottle):
    scope = "token"

    def get_rate(self) -> str:
        # Read each time (not once at import) so the setting can change in tests and reloads.
        return settings.API_TOKEN_RATE

    def get_cache_key(self, request, view) -> str | None:
        token = request.auth
        if not isinstance(token, ApiToken):
            return None
        return self.cache_format % {"scope": self.scope, "ident": token.pk}
