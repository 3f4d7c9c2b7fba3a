"""What the public pages show: components, public incidents with their public updates,
public maintenance, history, the Atom feed (parsed by feedparser) and the iCalendar feed;
and the canary: nothing internal ever appears on a public page, feed or email."""

from __future__ import annotations

import datetime as dt
import gzip

import feedparser
import icalendar
import pytest
from django.test import Client
from django.utils import timezone

from incidents.models import TimelineKind
from incidents.services import (
    PublicIncidentRefused,
    incident_add_note,
    incident_open,
    incident_public_update_post,
    incident_publish,
    incident_resolve,
    timeline_add,
)
from maintenance.services import window_finish, window_start
from opsportal.statuspage import services
from opsportal.statuspage.models import ComponentState, StatusSnapshot
from opsportal.systems.models import PostgresDatabase
from tests.statuspage.conftest import deliver_pending

CANARY_NOTE = "CANARY-internal-note-5f1e"
CANARY_HOST = "canary-db-7q3.internal.example"
CANARY_SYSTEM = "canary-orders-db-91x"
CANARY_OUTPUT = "CANARY-operation-output-c0ffee"
CANARY_TITLE = "CANARY internal title: pgbouncer pool on db-primary"


def anonymous() -> Client:
    return Client()


def page(path: str = "/status/") -> str:
    response = anonymous().get(path)
    assert response.status_code == 200, (path, response.status_code)
    return response.content.decode()


@pytest.fixture
def incident(responder, components):
    database = PostgresDatabase.objects.create(
        name=CANARY_SYSTEM, host=CANARY_HOST, dbname="orders", connect_timeout_seconds=1
    )
    components["Database"].systems.set([database])
    incident = incident_open(
        title=CANARY_TITLE,
        severity="sev2",
        category="database",
        reporter=responder,
        symptoms=f"{CANARY_HOST} refuses connections",
        affected_systems=[database],
    )
    incident_add_note(incident=incident, actor=responder, text=CANARY_NOTE)
    # What an operation leaves on the timeline (incidents.services.on_operation_finished).
    timeline_add(
        incident=incident,
        kind=TimelineKind.OPERATION,
        message=f"db_connections on {CANARY_SYSTEM} succeeded",
        output=CANARY_OUTPUT,
    )
    return incident


def test_a_public_incident_shows_its_public_updates_only(incident, responder, components):
    public = incident_publish(
        incident=incident,
        title="Slow database queries",
        components=[components["Database"]],
        actor=responder,
    )
    incident_public_update_post(
        public_incident=public,
        status="investigating",
        message="Some requests are slow; we are looking into it.",
        actor=responder,
    )
    incident_public_update_post(
        public_incident=public,
        status="identified",
        message="A connection pool is exhausted; we are freeing it.",
        actor=responder,
    )
    services.status_refresh()
    index = page()
    assert "Slow database queries" in index
    assert "Identified" in index and "A connection pool is exhausted" in index
    detail = page(f"/status/incidents/{incident.pk}/")
    assert "Some requests are slow" in detail and "Identified" in detail
    assert detail.index("A connection pool") < detail.index("Some requests are slow")

    incident_public_update_post(
        public_incident=public, status="resolved", message="Fixed.", actor=responder
    )
    services.status_refresh()
    assert "Current incidents" not in page()
    assert "Resolved" in page(f"/status/incidents/{incident.pk}/")
    assert "Slow database queries" in page("/status/history/")
    with pytest.raises(PublicIncidentRefused, match="resolved publicly"):
        incident_public_update_post(
            public_incident=public, status="monitoring", message="again", actor=responder
        )


def test_an_unpublished_incident_is_not_found(incident):
    assert anonymous().get(f"/status/incidents/{incident.pk}/").status_code == 404
    assert anonymous().get("/status/incidents/999999/").status_code == 404
    assert CANARY_TITLE not in page()


def test_publishing_needs_the_permission(incident, viewer, components):
    with pytest.raises(PublicIncidentRefused, match=r"incidents\.publish_incident"):
        incident_publish(incident=incident, title="x", actor=viewer)


def test_an_incident_sets_the_state_of_its_components_for_its_duration(
    incident, responder, components
):
    public = incident_publish(
        incident=incident,
        title="Database unavailable",
        components=[components["Database"]],
        component_state=ComponentState.MAJOR_OUTAGE,
        actor=responder,
    )
    services.status_refresh()
    components["Database"].refresh_from_db()
    assert components["Database"].state == ComponentState.MAJOR_OUTAGE
    assert "Major outage" in page()
    incident_public_update_post(
        public_incident=public, status="resolved", message="Back.", actor=responder
    )
    services.status_refresh()
    components["Database"].refresh_from_db()
    # Back to what monitoring says: no figures collected for it, so operational.
    assert components["Database"].state == ComponentState.OPERATIONAL


def test_an_incident_resolved_internally_is_not_shown_as_ongoing(incident, responder):
    incident_publish(incident=incident, title="Slow database queries", actor=responder)
    services.status_refresh()
    assert "Current incidents" in page()
    incident_resolve(incident=incident, actor=responder, resolution="done")
    services.status_refresh()
    assert "Current incidents" not in page()


def test_public_maintenance_in_the_next_14_days_with_its_components(
    public_window, devops, settings
):
    # The test starts a window days before its planned start ("start now"), which the
    # early-start bound refuses by default; the bound has tests of its own.
    settings.MAINTENANCE_EARLY_START_MINUTES = 4 * 24 * 60
    soon = public_window(affects=["Database", "API"])
    public_window(starts_in=dt.timedelta(days=20), public_title="Far away upgrade")
    public_window(public=False, public_title="Private window")
    services.status_refresh()
    index = page()
    assert "Database upgrade" in index and "Writes pause for up to five minutes." in index
    assert "Affects API, Database" in index
    assert "Far away upgrade" not in index and "Private window" not in index
    assert soon.title not in index  # the internal title

    window_start(window=soon, actor=devops, override_reason="test: start now")
    services.status_refresh()
    index = page()
    assert "In progress" in index
    assert index.count("Under maintenance") == 2

    window_finish(window=soon, actor=devops)
    services.status_refresh()
    assert "Under maintenance" not in page()
    assert "Database upgrade" in page("/status/history/")


def test_the_atom_feed_parses_with_an_independent_parser(incident, responder, public_window):
    public = incident_publish(incident=incident, title="Slow database queries", actor=responder)
    incident_public_update_post(
        public_incident=public, status="monitoring", message="Watching it.", actor=responder
    )
    public_window(affects=["Database"])
    response = anonymous().get("/status/feed.atom")
    assert response["Content-Type"].startswith("application/atom+xml")
    feed = feedparser.parse(response.content)
    assert not feed.bozo, feed.bozo_exception
    assert feed.version == "atom10"
    titles = [entry.title for entry in feed.entries]
    assert "Slow database queries — Monitoring" in titles
    assert "Maintenance: Database upgrade — Scheduled" in titles
    entry = next(e for e in feed.entries if e.title.startswith("Slow"))
    assert entry.link.endswith(f"/status/incidents/{incident.pk}/")
    assert "Watching it." in entry.summary


def test_the_calendar_lists_public_windows_only(public_window):
    shown = public_window(affects=["Database"])
    public_window(public=False, public_title="Private window")
    response = anonymous().get("/status/maintenance.ics")
    calendar = icalendar.Calendar.from_ical(response.content)
    events = [c for c in calendar.walk("VEVENT")]
    assert [str(e["summary"]) for e in events] == ["Maintenance: Database upgrade"]
    assert events[0]["dtstart"].dt == shown.starts_at.replace(microsecond=0)
    assert "Database" in str(events[0]["description"])


def test_the_page_is_served_precomputed_with_an_etag(components):
    services.status_refresh()
    client = anonymous()
    first = client.get("/status/")
    assert "public" in first["Cache-Control"]
    again = client.get("/status/", HTTP_IF_NONE_MATCH=first["ETag"])
    assert again.status_code == 304
    services.status_refresh()
    assert client.get("/status/", HTTP_IF_NONE_MATCH=first["ETag"]).status_code == 200
    # No JavaScript at all: the page works without it.
    assert "<script" not in first.content.decode()
    # Compressed for browsers that ask (once per version), the same page.
    packed = client.get("/status/", HTTP_ACCEPT_ENCODING="gzip, br")
    assert packed["Content-Encoding"] == "gzip" and "Accept-Encoding" in packed["Vary"]
    assert gzip.decompress(packed.content) == client.get("/status/").content


def test_the_page_can_be_kept_to_signed_in_users(settings, components, client, viewer):
    settings.STATUS_PAGE_LOGIN_REQUIRED = True
    response = anonymous().get("/status/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    client.force_login(viewer)
    response = client.get("/status/")
    assert response.status_code == 200 and "private" in response["Cache-Control"]


def test_a_public_update_refreshes_the_page_when_it_commits(
    incident, responder, django_capture_on_commit_callbacks
):
    services.status_refresh()
    before = StatusSnapshot.objects.get().version
    with django_capture_on_commit_callbacks(execute=True):
        incident_publish(incident=incident, title="Slow database queries", actor=responder)
    assert StatusSnapshot.objects.get().version > before
    assert "Slow database queries" in page()


def test_canary_nothing_internal_appears_publicly(
    incident, responder, components, public_window, smtp, client
):
    public = incident_publish(
        incident=incident,
        title="Slow database queries",
        components=[components["Database"]],
        actor=responder,
    )
    # A subscriber, so the emails are swept too.
    anonymous().post("/status/subscribe/", {"email": "user@example.org"})
    deliver_pending()
    link = next(
        line for line in smtp.messages[-1]["data"].splitlines() if "/subscribe/confirm/" in line
    )
    anonymous().post(link.split("http://127.0.0.1:8000", 1)[1].strip())
    incident_public_update_post(
        public_incident=public, status="identified", message="Pool exhausted.", actor=responder
    )
    window = public_window(affects=["Database"])
    window.systems.set(list(components["Database"].systems.all()))
    services.status_refresh(now=timezone.now())
    components["Database"].refresh_from_db()
    assert components["Database"].state_reason  # internal reasons exist (they name systems)
    deliver_pending()
    swept = {
        path: page(path)
        for path in (
            "/status/",
            f"/status/incidents/{incident.pk}/",
            "/status/history/",
            "/status/feed.atom",
            "/status/maintenance.ics",
            "/status/subscribe/",
        )
    }
    swept.update({f"mail {i}": m["data"] for i, m in enumerate(smtp.messages)})
    assert any("Pool exhausted." in text for text in swept.values())
    for canary in (
        CANARY_NOTE,
        CANARY_HOST,
        CANARY_SYSTEM,
        CANARY_OUTPUT,
        CANARY_TITLE,
        window.title,
        "olive",
        "Olive",
        components["Database"].state_reason,
    ):
        leaks = [where for where, text in swept.items() if canary in text]
        assert not leaks, f"{canary!r} appears publicly in {leaks}"
