import hmac
import time

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from opsportal.health import checks, metrics


def _bearer_matches(request: HttpRequest, token: str) -> bool:
    if not token:
        return False
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), token)


@login_not_required
@never_cache
@require_GET
def health(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers. Touches no database or network service."""
    return JsonResponse({"status": "ok"})


@login_not_required
@never_cache
@require_GET
def health_detailed(request: HttpRequest) -> JsonResponse:
    started = time.perf_counter()
    outcomes = checks.run_checks()
    ok = checks.overall_ok(outcomes)
    body: dict = {"status": "ok" if ok else "failing"}
    user = getattr(request, "user", None)
    if (user is not None and user.is_active and user.is_staff) or _bearer_matches(
        request, settings.HEALTH_TOKEN
    ):
        body["checked_at"] = timezone.now().isoformat()
        body["duration_ms"] = round((time.perf_counter() - started) * 1000, 1)
        body["checks"] = [o.as_dict() for o in outcomes]
    return JsonResponse(body, status=200 if ok else 503)


@login_not_required
@never_cache
@require_GET
def prometheus_metrics(request: HttpRequest) -> HttpResponse:
    if settings.METRICS_TOKEN and not _bearer_matches(request, settings.METRICS_TOKEN):
        return HttpResponse(
            "A bearer token is required.\n",
            status=401,
            content_type="text/plain",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return HttpResponse(metrics.render(), content_type="text/plain; version=0.0.4; charset=utf-8")
