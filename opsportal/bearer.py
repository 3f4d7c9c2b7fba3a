"""Bearer tokens of the machine endpoints (/health/detailed, /metrics, the Alertmanager webhook).

Tokens travel only in the Authorization header: a token in the query string ends up in every
access log on the way. Comparison is on bytes, so a header with non-ASCII characters (which
`hmac.compare_digest` refuses on str) is simply a wrong token, not a server error.
"""

from __future__ import annotations

import hmac

from django.http import HttpRequest


def _as_bytes(text: str) -> bytes:
    # surrogatepass: any str encodes (WSGI headers are latin-1 decoded; a test client or an
    # ASGI server may hand over anything), and distinct strings stay distinct bytes.
    return text.encode("utf-8", "surrogatepass")


def bearer_presented(request: HttpRequest) -> bool:
    """Whether the request carries an Authorization header at all (right or wrong)."""
    return bool(request.headers.get("Authorization", "").strip())


def bearer_matches(request: HttpRequest, token: str) -> bool:
    """True when the Authorization header is `Bearer <token>`; False for anything else,
    including an empty configured token (the endpoint then accepts no token)."""
    if not token:
        return False
    scheme, _, given = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(_as_bytes(given.strip()), _as_bytes(token))
