"""The OpenAPI document: the bearer token scheme, and the one error body documented on
every operation for every status the API can refuse with."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object

ERROR_STATUSES = {
    "400": "Invalid input (malformed JSON, unknown fields, wrong types, out-of-range values).",
    "401": "No API token, or one that is unknown, expired, revoked or whose owner is deactivated.",
    "403": "The token is read-only, or its owner's role lacks the permission.",
    "404": "No such object (or endpoint).",
    "405": "The endpoint does not answer this method.",
    "406": "The Accept header asks for a format the API does not produce.",
    "409": "The service refused (an illegal transition, a busy target, ...): detail says why.",
    # Answered by gunicorn before the portal sees the request, as its own HTML page.
    "414": "The URL (query string included) is longer than the server reads (4094 bytes).",
    "415": "The body is not JSON.",
    "429": "Too many requests with this token: wait Retry-After seconds.",
}


class ApiTokenScheme(OpenApiAuthenticationExtension):
    target_class = "opsportal.api.authentication.ApiTokenAuthentication"
    name = "ApiToken"

    def get_security_definition(self, auto_schema):
        return build_bearer_security_scheme_object(
            header_name="Authorization",
            token_prefix="Bearer",  # noqa: S106 (the scheme name, not a secret)
        )


def add_error_responses(result, generator, request, public):
    """Postprocessing hook: every operation documents the error body for every refusal."""
    components = result.setdefault("components", {}).setdefault("schemas", {})
    components.setdefault(
        "Error",
        {
            "type": "object",
            "properties": {
                "error": {"type": "string"},
                "detail": {"type": "string"},
                "fields": {
                    "type": "object",
                    "additionalProperties": {"type": "array", "items": {"type": "string"}},
                },
            },
            "required": ["error", "detail"],
        },
    )
    body = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for path_item in result.get("paths", {}).values():
        for operation in path_item.values():
            responses = operation.setdefault("responses", {})
            for code, description in ERROR_STATUSES.items():
                if code not in responses:
                    entry = {"description": description, "content": body}
                    if code == "414":
                        entry["content"] = {"text/html": {"schema": {"type": "string"}}}
                    if code == "429":
                        entry["headers"] = {
                            "Retry-After": {
                                "schema": {"type": "integer"},
                                "description": "Seconds to wait before the next request.",
                            }
                        }
                    responses[code] = entry
    return result
