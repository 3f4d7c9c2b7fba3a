"""One error body for every refusal: {"error": <code>, "detail": <message>} plus, for
invalid input, "fields": {field: [messages]}.

Service refusals (opsportal.refusals.ServiceRefused) answer 409 with the service's message,
the same words the admin shows; Django's PermissionDenied (a service's own permission check)
403; Django's ValidationError (a service's validation) 400 with its fields."""

from __future__ import annotations

from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, serializers, status
from rest_framework.views import exception_handler

from opsportal.refusals import ServiceRefused


class Refused(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "refused"
    default_detail = "The request was refused."


class ErrorSerializer(serializers.Serializer):
    error = serializers.CharField(help_text="A short machine-readable code, e.g. 'not_found'.")
    detail = serializers.CharField(help_text="What was wrong, in words for a person.")
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="For invalid input: each field's problems.",
    )


def _flatten(data, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested error structure as {"field" or "field.sub": [messages]}."""
    out: dict[str, list[str]] = {}
    if isinstance(data, dict):
        for key, value in data.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            for inner, messages in _flatten(value, name).items():
                out.setdefault(inner, []).extend(messages)
    elif isinstance(data, list):
        for index, value in enumerate(data):
            if isinstance(value, dict | list):
                for inner, messages in _flatten(
                    value, f"{prefix}.{index}" if prefix else str(index)
                ).items():
                    out.setdefault(inner, []).extend(messages)
            else:
                out.setdefault(prefix or "non_field_errors", []).append(str(value))
    else:
        out.setdefault(prefix or "non_field_errors", []).append(str(data))
    return out


def _translate(exc: Exception) -> Exception:
    if isinstance(exc, ServiceRefused):
        return Refused(exc.message)
    if isinstance(exc, DjangoValidationError):
        if hasattr(exc, "error_dict"):
            return exceptions.ValidationError(
                {
                    field: [m for e in errors for m in e.messages]
                    for field, errors in exc.error_dict.items()
                }
            )
        return exceptions.ValidationError({"non_field_errors": exc.messages})
    if isinstance(exc, DjangoPermissionDenied):
        return exceptions.PermissionDenied(str(exc) or None)
    if isinstance(exc, Http404):
        return exceptions.NotFound(str(exc) or None)
    return exc


def api_exception_handler(exc, context):
    exc = _translate(exc)
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        fields = _flatten(exc.detail)
        summary = "; ".join(f"{name}: {' '.join(messages)}" for name, messages in fields.items())
        response.data = {
            "error": "invalid",
            "detail": summary or "Invalid input.",
            "fields": fields,
        }
    else:
        detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
        if isinstance(detail, dict | list):
            detail = "; ".join(m for ms in _flatten(detail).values() for m in ms)
        code = exc.get_codes() if isinstance(exc, exceptions.APIException) else "error"
        response.data = {"error": code if isinstance(code, str) else "error", "detail": str(detail)}
    return response


@csrf_exempt
@login_not_required
def api_not_found(request, *args, **kwargs):
    """Any other path under /api/v1/: the same error body, not an HTML page."""
    return JsonResponse(
        {"error": "not_found", "detail": f"There is no API endpoint at {request.path}."},
        status=404,
    )
