"""One page per root cause (incidents.services.grouping): alerts about what runs on an
unreachable Docker engine join the engine's incident, in whichever order they arrive, and are
handed over as incidents of their own when the engine recovers while they still fire."""

import datetime as dt

import pytest
from django.utils import timezone

from incidents.models import Alert, Incident, Status, TimelineKind
from incidents.services import alert_receive, alerts_release_held
from opsportal.audit.models import AuditRecord
from opsportal.people.models import Notification
from opsportal.systems.models import DockerEngine, HttpEndpoint, PostgresDatabase


@pytest.fixture
def host(db):
    engine = DockerEngine.objects.create(name="engine-b", base_url="unix:///nonexistent.sock")
    database = PostgresDatabase.objects.create(
        name="orders-db", host="127.0.0.1", dbname="orders", docker_engine=engine,
        container_name="orders-db",
    )  # fmt: skip
    api = HttpEndpoint.objects.create(
        name="orders-api", url="http://127.0.0.1:9/", docker_engine=engine, container_name="api"
    )
    return engine, database, api


def engine_alert(engine, status="firing", auto_resolve=True):
    return alert_receive(
        fingerprint="engine-b-up",
        status=status,
        title="Docker engine not answering on engine-b",
        severity="sev1",
        category="container",
        systems=[engine],
        source="rule",
        outage_of=engine,
        auto_resolve=auto_resolve,
    )


def child_alert(system, status="firing"):
    # No runs_on given: derived from the system's Docker engine, as for Alertmanager.
    return alert_receive(
        fingerprint=f"{system.name}-up",
        status=status,
        title=f"{system.name} not answering",
        severity="sev1",
        category="database",
        systems=[system],
        source="rule",
        auto_resolve=True,
    )


def pages(incident) -> int:
    return Notification.objects.filter(about_id=str(incident.pk)).count()


def test_engine_first_children_join_its_incident_without_paging(teams, host):
    engine, database, api = host
    parent = engine_alert(engine).incident
    sent = pages(parent)
    assert sent > 0
    for system in (database, api):
        alert = child_alert(system)
        assert alert.incident == parent and alert.related and alert.runs_on_id == engine.pk
    assert Incident.objects.count() == 1 and pages(parent) == sent
    related = parent.timeline.filter(message__startswith="Related alert")
    assert related.count() == 2 and "nobody paged" in related.first().message
    # A repeat of a child's alert stays related; its recovery resolves nothing.
    child_alert(database)
    resolved = child_alert(database, status="resolved")
    parent.refresh_from_db()
    assert resolved.incident == parent and parent.status == Status.OPEN
    assert parent.timeline.filter(message__startswith="Related alert resolved").exists()
    assert AuditRecord.objects.filter(message__contains="joined incident").count() == 3


def test_child_first_is_grouped_under_the_engine_incident(paging, host):
    engine, database, _ = host
    own = child_alert(database).incident
    assert pages(own) > 0  # it paged on its own: nobody knew the engine was down yet
    assert own.escalations.filter(status="active").exists()
    parent = engine_alert(engine).incident
    own.refresh_from_db()
    assert own.status == Status.RESOLVED and own.grouped_under == parent
    assert f"Grouped under #{parent.pk}" in own.resolution
    assert "pages already sent for this incident stand" in own.resolution
    # Its escalation stopped and those it paged heard where it went; nothing more pages it.
    assert own.timeline.filter(message__contains=f"grouping under #{parent.pk}").exists()
    assert not own.escalations.filter(status="active").exists()
    moved = Alert.objects.filter(fingerprint="orders-db-up").latest("id")
    assert moved.incident == parent and moved.related
    assert parent.timeline.filter(message__startswith=f"Grouped #{own.pk}").exists()
    # The engine's incident paged once, for itself; a later child adds no page.
    parent_pages = pages(parent)
    child_alert(database)
    assert pages(parent) == parent_pages and Incident.objects.count() == 2


def test_engine_recovers_children_still_firing_are_handed_over(teams, host):
    engine, database, api = host
    parent = engine_alert(engine).incident
    child_alert(database)
    child_alert(api)
    child_alert(api, status="resolved")  # the API came back with the engine
    engine_alert(engine, status="resolved")
    parent.refresh_from_db()
    assert parent.status == Status.RESOLVED
    own = Incident.objects.get(alert_fingerprint="orders-db-up")
    assert own.is_active and pages(own) > 0  # a real fault now: it pages
    assert not Incident.objects.filter(alert_fingerprint="orders-api-up").exists()
    assert parent.timeline.filter(
        message__contains=f"handed over to its own incident #{own.pk}"
    ).exists()
    assert AuditRecord.objects.filter(message__contains="handed over after engine-b").exists()


def test_children_recover_first_then_engine_opens_nothing_more(teams, host):
    engine, database, api = host
    parent = engine_alert(engine).incident
    for system in (database, api):
        child_alert(system)
        child_alert(system, status="resolved")
    engine_alert(engine, status="resolved")
    assert Incident.objects.count() == 1
    parent.refresh_from_db()
    assert parent.status == Status.RESOLVED
    assert parent.timeline.filter(message__startswith="Related alert resolved").count() == 2


def test_children_of_a_suppressed_engine_are_held_and_released_after_it(teams, host):
    from maintenance.models import MaintenanceWindow

    engine, database, _ = host
    now = timezone.now()
    window = MaintenanceWindow.objects.create(
        title="Engine upgrade",
        starts_at=now - dt.timedelta(minutes=5),
        ends_at=now + dt.timedelta(hours=1),
        suppress_from=now - dt.timedelta(minutes=5),
        suppress_until=now + dt.timedelta(hours=1),
    )
    window.systems.add(engine)  # the engine only, not what runs on it
    assert engine_alert(engine).suppressed_by == window
    held = child_alert(database)
    assert held.suppressed_by == window and held.incident is None
    assert not Incident.objects.exists() and not Notification.objects.exists()
    # The window ends with the engine still down: one incident, the child joins it.
    MaintenanceWindow.objects.filter(pk=window.pk).update(suppress_until=timezone.now())
    alerts_release_held(window=window)
    parent = Incident.objects.get()
    assert parent.alert_fingerprint == "engine-b-up"
    assert Alert.objects.filter(fingerprint="orders-db-up").latest("id").related
    assert parent.timeline.filter(kind=TimelineKind.NOTIFICATION).exists()


def test_engine_recovers_inside_its_window_held_children_are_handed_over(teams, host):
    from maintenance.models import MaintenanceWindow

    engine, database, _ = host
    now = timezone.now()
    window = MaintenanceWindow.objects.create(
        title="Engine upgrade",
        starts_at=now - dt.timedelta(minutes=5),
        ends_at=now + dt.timedelta(hours=1),
        suppress_from=now - dt.timedelta(minutes=5),
        suppress_until=now + dt.timedelta(hours=1),
    )
    window.systems.add(engine)
    engine_alert(engine)
    child_alert(database)
    engine_alert(engine, status="resolved")
    # The database's own systems are not in maintenance: it is a fault of its own now.
    own = Incident.objects.get()
    assert own.alert_fingerprint == "orders-db-up" and pages(own) > 0


def test_incident_pages_show_the_grouping(host, engineer, client):
    from django.urls import reverse

    engine, database, api = host
    own = child_alert(database).incident
    parent = engine_alert(engine).incident
    child_alert(api)
    client.force_login(engineer)
    page = client.get(reverse("admin:incidents_incident_change", args=[parent.pk])).content
    body = page.decode()
    assert body.count('class="related-alert"') == 2
    assert "orders-db" in body and "orders-api" in body and f"#{own.pk} " in body
    child_page = client.get(reverse("admin:incidents_incident_change", args=[own.pk]))
    assert f"incident #{parent.pk}</a>" in child_page.content.decode()
