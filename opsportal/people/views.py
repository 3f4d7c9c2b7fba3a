"""Each person's on-call shifts as an .ics feed, behind their secret link (calendar apps
cannot sign in)."""

from django.contrib.auth.decorators import login_not_required
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from opsportal.people.models import ShiftCalendar
from opsportal.people.shifts import shift_feed


# The secret link is the credential: calendar apps cannot log in.
@login_not_required
@require_GET
def shift_feed_view(request: HttpRequest, token: str) -> HttpResponse:
    calendar = (
        ShiftCalendar.objects.filter(token=token, contact__active=True)
        .select_related("contact")
        .first()
    )
    if calendar is None:
        raise Http404("No such calendar.")
    body = shift_feed(contact=calendar.contact, domain=request.get_host().split(":")[0])
    response = HttpResponse(body, content_type="text/calendar; charset=utf-8")
    response["Content-Disposition"] = 'inline; filename="shifts.ics"'
    response["Cache-Control"] = "private, max-age=300"
    return response
