"""The public pages under /status/: no admin, no JavaScript, nothing internal."""

from __future__ import annotations

import datetime as dt
import functools
import gzip
from collections import defaultdict

import icalendar
from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.feedgenerator import Atom1Feed
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from opsportal.audit.middleware import client_address
from opsportal.statuspage import services, sources
from opsportal.statuspage.models import Component, StatusSnapshot
from opsportal.statuspage.page import UPCOMING_DAYS

HISTORY_MONTHS = 12


def public(view):
    """Anyone may open it, unless STATUS_PAGE_LOGIN_REQUIRED keeps it to signed-in users."""

    @login_not_required
    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        if settings.STATUS_PAGE_LOGIN_REQUIRED and not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        response = view(request, *args, **kwargs)
        if not response.has_header("Cache-Control"):
            response["Cache-Control"] = "no-store"
        return response

    return wrapper


def _cache_control() -> str:
    scope = "private" if settings.STATUS_PAGE_LOGIN_REQUIRED else "public"
    return f"{scope}, max-age={settings.STATUS_PAGE_MAX_AGE_SECONDS}"


def refused(request, error: services.SubscriptionRefused, title: str):
    return render(
        request,
        "statuspage/message.html",
        {"title": title, "message": error.message, "problem": True},
        status=error.status,
    )


# The last page this process served, as (key, body, gzipped body): a visit reads only the
# page's key unless the page changed since, and is compressed once per version.
_served: tuple[str, bytes, bytes] = ("", b"", b"")


def _key(version: int, computed_at: dt.datetime) -> str:
    # With the time too: a database restored or reset starts its versions again.
    return f"{version}-{int(computed_at.timestamp() * 1000)}"


@public
@require_http_methods(["GET", "HEAD"])
def index(request):
    global _served
    current = StatusSnapshot.objects.filter(pk=1).values_list("version", "computed_at").first()
    if current is None:
        snapshot = services.status_refresh()
        current = (snapshot.version, snapshot.computed_at)
    key = _key(*current)
    etag = f'"status-{key}"'
    if request.headers.get("If-None-Match") == etag:
        response = HttpResponse(status=304)
    else:
        if _served[0] != key:
            snapshot = StatusSnapshot.objects.filter(pk=1).first()
            body = snapshot.html.encode()
            key = _key(snapshot.version, snapshot.computed_at)
            _served = (key, body, gzip.compress(body, compresslevel=6, mtime=0))
            etag = f'"status-{key}"'
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            response = HttpResponse(_served[2])
            response["Content-Encoding"] = "gzip"
        else:
            response = HttpResponse(_served[1])
    response["ETag"] = etag
    response["Vary"] = "Accept-Encoding"
    response["Cache-Control"] = _cache_control()
    return response


@public
@require_http_methods(["GET", "HEAD"])
def incident(request, incident_id: int):
    found = sources.public_incident(pk=incident_id)
    if found is None:
        raise Http404("No public incident with that number.")
    names = dict(Component.objects.filter(pk__in=found.component_ids).values_list("pk", "name"))
    response = render(
        request,
        "statuspage/incident.html",
        {"incident": found, "components": [names[c] for c in found.component_ids if c in names]},
    )
    response["Cache-Control"] = _cache_control()
    return response


@public
@require_http_methods(["GET", "HEAD"])
def history(request):
    now = timezone.now()
    today = now.date()
    first = (today.replace(day=1) - dt.timedelta(days=31 * (HISTORY_MONTHS - 1))).replace(day=1)
    since = dt.datetime.combine(first, dt.time(), tzinfo=dt.UTC)
    names = dict(Component.objects.values_list("pk", "name"))
    months: dict[dt.date, dict[str, list]] = defaultdict(lambda: {"incidents": [], "windows": []})
    for item in sources.public_incidents(since=since):
        months[item.started_at.date().replace(day=1)]["incidents"].append(item)
    # A window may be cancelled, or finish early, before its planned start.
    for window in sources.public_windows(start=since, end=now + dt.timedelta(days=366)):
        if window.status in ("completed", "cancelled") or window.ends_at <= now:
            happened = min(window.starts_at, window.updated_at)
            months[happened.date().replace(day=1)]["windows"].append(
                (window, [names[c] for c in window.component_ids if c in names])
            )
    listed = []
    month = today.replace(day=1)
    while month >= first:
        listed.append((month, months.get(month, {"incidents": [], "windows": []})))
        month = (month - dt.timedelta(days=1)).replace(day=1)
    response = render(request, "statuspage/history.html", {"months": listed})
    response["Cache-Control"] = _cache_control()
    return response


@public
@require_http_methods(["GET", "HEAD"])
def feed(request):
    now = timezone.now()
    base = request.build_absolute_uri("/status/")
    atom = Atom1Feed(
        title="Platform status",
        link=base,
        description="Incidents and maintenance of the platform",
        feed_url=request.build_absolute_uri(),
        language="en",
    )
    entries = []
    for item in sources.public_incidents(since=now - dt.timedelta(days=90)):
        latest = item.updates[0] if item.updates else None
        body = "\n\n".join(
            f"{u.status_label} ({u.at:%Y-%m-%d %H:%M} UTC): {u.message}" for u in item.updates
        )
        entries.append(
            {
                "title": f"{item.title} — {item.status_label}",
                "link": request.build_absolute_uri(f"/status/incidents/{item.id}/"),
                "unique_id": f"tag:status,incident-{item.id}",
                "updateddate": latest.at if latest else item.started_at,
                "pubdate": item.started_at,
                "description": body or "Investigating.",
            }
        )
    for window in sources.public_windows(
        start=now - dt.timedelta(days=90), end=now + dt.timedelta(days=UPCOMING_DAYS)
    ):
        entries.append(
            {
                "title": f"Maintenance: {window.title} — {window.status_label}",
                "link": base + "#maintenance",
                "unique_id": f"tag:status,maintenance-{window.id}",
                "updateddate": window.updated_at,
                "pubdate": window.updated_at,
                "description": f"{window.starts_at:%Y-%m-%d %H:%M} to "
                f"{window.ends_at:%Y-%m-%d %H:%M} UTC. {window.impact}",
            }
        )
    for entry in sorted(entries, key=lambda e: e["updateddate"], reverse=True):
        atom.add_item(**entry)
    response = HttpResponse(
        atom.writeString("utf-8"), content_type="application/atom+xml; charset=utf-8"
    )
    response["Cache-Control"] = _cache_control()
    return response


@public
@require_http_methods(["GET", "HEAD"])
def calendar(request):
    now = timezone.now()
    domain = request.get_host().split(":")[0] or "opsportal"
    cal = icalendar.Calendar()
    cal.add("prodid", "-//OpsPortal//Public maintenance//EN")
    cal.add("version", "2.0")
    cal.add("method", "PUBLISH")
    cal.add("x-wr-calname", "Platform maintenance")
    names = dict(Component.objects.values_list("pk", "name"))
    for window in sources.public_windows(
        start=now - dt.timedelta(days=30), end=now + dt.timedelta(days=365)
    ):
        event = icalendar.Event()
        event.add("uid", f"public-maintenance-{window.id}@{domain}")
        event.add("dtstamp", now)
        event.add("dtstart", window.starts_at.astimezone(dt.UTC))
        event.add("dtend", window.ends_at.astimezone(dt.UTC))
        event.add("summary", f"Maintenance: {window.title}")
        affected = ", ".join(names[c] for c in window.component_ids if c in names)
        event.add("description", f"Affected: {affected or 'not stated'}\n{window.impact}".strip())
        event.add("sequence", window.sequence)
        event.add("status", "CANCELLED" if window.status == "cancelled" else "CONFIRMED")
        cal.add_component(event)
    response = HttpResponse(cal.to_ical(), content_type="text/calendar; charset=utf-8")
    response["Cache-Control"] = _cache_control()
    return response


@public
@require_http_methods(["GET", "HEAD", "POST"])
def subscribe(request):
    components = list(Component.objects.all())
    if request.method == "POST":
        email = request.POST.get("email", "")
        try:
            services.subscriber_request(
                email=email,
                component_ids=request.POST.getlist("components"),
                client=client_address(request),
            )
        except services.SubscriptionRefused as error:
            return render(
                request,
                "statuspage/subscribe.html",
                {"components": components, "error": error.message, "email": email[:254]},
                status=error.status,
            )
        return render(
            request,
            "statuspage/message.html",
            {
                "title": "Check your inbox",
                "message": "We sent a message to that address. Open the link in it to "
                "confirm; nothing is sent to the address until you do. If the address "
                "was subscribed already, the message says so and nothing changed.",
            },
        )
    return render(request, "statuspage/subscribe.html", {"components": components})


@public
@require_http_methods(["GET", "HEAD", "POST"])
def confirm(request, signed: str):
    if request.method == "POST":
        try:
            _subscriber, fresh = services.subscriber_confirm(signed=signed)
        except services.SubscriptionRefused as error:
            return refused(request, error, "Link not valid")
        return render(
            request,
            "statuspage/message.html",
            {
                "title": "Subscribed" if fresh else "Already confirmed",
                "message": "You will get the platform's incident and maintenance updates "
                "by email. Every message has a one-click unsubscribe link."
                if fresh
                else "This subscription was confirmed already; nothing changed.",
            },
        )
    try:
        subscriber = services.subscriber_for_confirmation(signed=signed)
    except services.SubscriptionRefused as error:
        return refused(request, error, "Link not valid")
    return render(
        request,
        "statuspage/confirm.html",
        {"subscriber": subscriber, "components": list(subscriber.components.all())},
    )


# The secret link is the credential: a mail client's one-click unsubscribe (RFC 8058) posts
# without a CSRF token, and a forged cross-site post cannot know the link.
@csrf_exempt
@public
@require_http_methods(["GET", "HEAD", "POST"])
def unsubscribe(request, token: str):
    if request.method == "POST":
        try:
            services.subscriber_unsubscribe(token=token)
        except services.SubscriptionRefused as error:
            return refused(request, error, "Link not valid")
        return render(
            request,
            "statuspage/message.html",
            {"title": "Unsubscribed", "message": "This address gets no more status updates."},
        )
    try:
        services.subscriber_for_token(token=token)
    except services.SubscriptionRefused as error:
        return refused(request, error, "Link not valid")
    return render(request, "statuspage/unsubscribe.html", {"token": token})
