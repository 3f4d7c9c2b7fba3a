"""The .ics feed, behind each person's secret link (calendar apps cannot log in)."""

from django.contrib.auth.decorators import login_not_required
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from maintenance import calendar
from maintenance.models import CalendarSubscription
from maintenance.selectors import windows_for_feed


# The secret link is the credential: calendar apps cannot log in.
@login_not_required
@require_GET
def calendar_feed(request: HttpRequest, token: str) -> HttpResponse:
    subscription = (
        CalendarSubscription.objects.filter(token=token, user__is_active=True)
        .select_related("user")
        .first()
    )
    if subscription is None or not subscription.user.has_perm("maintenance.view_maintenancewindow"):
        raise Http404("No such calendar.")
    body = calendar.feed(windows=windows_for_feed(), domain=request.get_host().split(":")[0])
    response = HttpResponse(body, content_type="text/calendar; charset=utf-8")
    response["Content-Disposition"] = 'inline; filename="maintenance.ics"'
    response["Cache-Control"] = "private, max-age=300"
    return response
