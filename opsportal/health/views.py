import contextlib
import time

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from opsportal.bearer import bearer_matches, bearer_presented
from opsportal.health import checks, metrics, services


def _wrong_token(body: dict | str) -> HttpResponse:
    headers = {"WWW-Authenticate": "Bearer"}
    if isinstance(body, dict):
        return JsonResponse(body, status=401, headers=headers)
    return HttpResponse(body, status=401, content_type="text/plain", headers=headers)


@login_not_required
@never_cache
@require_GET
def health(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers. Touches no database or network service."""
    return JsonResponse({"status": "ok"})


@login_not_required
@never_cache
@require_GET
def health_detailed(request: HttpRequest) -> HttpResponse:
    user = getattr(request, "user", None)
    if (user is not None and user.is_active and user.is_staff) or bearer_matches(
        request, settings.HEALTH_TOKEN
    ):
        started = time.perf_counter()
        outcomes = checks.run_checks()
        ok = checks.overall_ok(outcomes)
        # A fresher verdict for anonymous callers too; with the database down the outcomes
        # already say so, and the report must not turn them into a server error.
        with contextlib.suppress(DatabaseError):
            services.status_report_record(outcomes=outcomes)
        body = {
            "status": "ok" if ok else "failing",
            "checked_at": timezone.now().isoformat(),
            "duration_ms": round((time.perf_counter() - started) * 1000, 1),
            "checks": [o.as_dict() for o in outcomes],
        }
        return JsonResponse(body, status=200 if ok else 503)
    if bearer_presented(request):
        return _wrong_token({"error": "Wrong bearer token."})
    # Anyone else gets the newest scheduled run's verdict: live checks would let an outsider
    # make the portal connect to every registered system (with its credentials) per request.
    try:
        ok = services.status_report_current_ok()
    except DatabaseError:
        ok = False
    return JsonResponse({"status": "ok" if ok else "failing"}, status=200 if ok else 503)


@login_not_required
@never_cache
@require_GET
def prometheus_metrics(request: HttpRequest) -> HttpResponse:
    if settings.METRICS_TOKEN and not bearer_matches(request, settings.METRICS_TOKEN):
        return _wrong_token("A bearer token is required.\n")
    return HttpResponse(metrics.render(), content_type="text/plain; version=0.0.4; charset=utf-8")
