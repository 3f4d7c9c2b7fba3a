"""One page per root cause on a real engine: a second Docker engine hosting ten HTTP services
and a PostgreSQL database in containers, all registered as systems on it, is stopped. The
children fail to collect before the engine does (the database's rule has no for-duration,
the engine's has one): monitoring holds them while the engine does not answer, and once the
engine's alert fires they join its incident. One incident, one round of pages, the eleven
children listed on its page. The engine started again (its containers not): the eleven are
handed over as incidents of their own."""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.urls import reverse

from incidents.models import Alert, Incident
from incidents.selectors import incident_related_alerts
from incidents.services import incidents_load_defaults
from opsportal.access import groups_load_defaults
from opsportal.audit.models import AuditRecord
from opsportal.monitoring import services
from opsportal.monitoring.models import AlertRule, AlertState, AlertStatus, CollectionSchedule
from opsportal.people.models import Notification
from opsportal.systems.models import DockerEngine, HttpEndpoint, PostgresDatabase
from tests import realsystems
from tests.second_engine import second_engine

pytestmark = pytest.mark.docker

SERVICES = 10
PASSWORD = "s3cret-second-engine-db"
WEB_SERVER = "mkdir -p /w && echo ok > /w/index.html && httpd -f -p {port} -h /w"


@pytest.fixture
def engine_b(docker_client):
    with second_engine(docker_client) as engine:
        yield engine


def start_children(engine) -> tuple[list[tuple[str, int]], tuple[str, int]]:
    """Ten busybox web servers and a PostgreSQL server on the engine (host network; killed,
    not asked, when the daemon stops, so the stop takes no grace period). The database's
    container is kept between runs (see tests/second_engine.py)."""
    web = [(f"web-{n}", realsystems.free_port()) for n in range(SERVICES)]
    with ThreadPoolExecutor(max_workers=SERVICES) as pool:
        list(
            pool.map(
                lambda item: engine.client.containers.run(
                    "opsportal-test/busybox:1",
                    ["sh", "-c", WEB_SERVER.format(port=item[1])],
                    name=item[0],
                    detach=True,
                    network_mode="host",
                    stop_signal="SIGKILL",
                ),
                web,
            )
        )
    _, db_port = engine.kept_container(
        "orders-db",
        lambda port: {
            "image": "opsportal-test/postgres:15",
            "command": ["-p", str(port)],
            "environment": {"POSTGRES_PASSWORD": PASSWORD},
            "stop_signal": "SIGKILL",
        },
    )
    for port in [p for _, p in web] + [db_port]:
        realsystems.wait_for_port(port, timeout=60)
    dsn = f"host=127.0.0.1 port={db_port} user=postgres password={PASSWORD} dbname=postgres"
    deadline = time.monotonic() + 60
    while True:  # the port opens before initdb's restart is over: await a real connection
        try:
            psycopg.connect(dsn, connect_timeout=2).close()
            break
        except psycopg.OperationalError:
            assert time.monotonic() < deadline, "the database in the container did not start"
            time.sleep(0.2)
    return web, ("orders-db", db_port)


def collect(systems) -> None:
    """One collection round in which only `systems` are due."""
    CollectionSchedule.objects.filter(system__in=systems).update(next_due_at=None)
    services.collection_run_due()


@pytest.fixture
def dba_viewer(db):
    groups_load_defaults()
    user = get_user_model().objects.create_user("dana", "dana@example.com", "pw-dana-123!")
    user.is_staff = True
    user.save()
    user.groups.add(Group.objects.get(name="DevOps"))
    return user


def test_stopping_an_engine_opens_one_incident_pages_once_lists_its_children(
    teams, engine_b, dba_viewer, client
):
    incidents_load_defaults()
    services.monitoring_load_defaults()
    # The endpoints' error rate fires at once (its default waits a minute); the engine's
    # rule keeps its for-duration, which the test lets pass by moving its start back.
    AlertRule.objects.filter(name="API error rate above 5%").update(for_seconds=0)
    engine_rule = AlertRule.objects.get(name="Docker engine not answering")
    engine_rule.keep_firing_seconds = 0  # resolve as soon as it answers (the default waits)
    engine_rule.save()
    web, (db_name, db_port) = start_children(engine_b)
    engine = DockerEngine.objects.create(name="engine-b", base_url=engine_b.url, timeout_seconds=3)
    children = [
        HttpEndpoint.objects.create(
            name=name, url=f"http://127.0.0.1:{port}/", timeout_seconds=2,
            docker_engine=engine, container_name=name,
        )
        for name, port in web
    ] + [
        PostgresDatabase.objects.create(
            name=db_name, host="127.0.0.1", port=db_port, dbname="postgres", password=PASSWORD,
            connect_timeout_seconds=2, docker_engine=engine, container_name=db_name,
        )
    ]  # fmt: skip
    services.collection_schedules_ensure()
    collect([engine, *children])
    assert not Alert.objects.exists(), "everything answers before the engine stops"

    engine_b.stop()
    # The children are collected first: the engine's last sample still says it answered.
    collect(children)
    held = AlertState.objects.filter(system__in=children, status=AlertStatus.FIRING)
    assert held.count() == len(children) and not held.filter(delivered=True).exists()
    assert not Incident.objects.exists()
    # The engine: not answering, its alert pending for its for-duration; children wait on.
    collect([engine])
    parent_state = AlertState.objects.get(system=engine, rule=engine_rule)
    assert parent_state.status == AlertStatus.PENDING and not Incident.objects.exists()
    AlertState.objects.filter(pk=parent_state.pk).update(
        since=parent_state.since - dt.timedelta(seconds=engine_rule.for_seconds)
    )
    collect([engine])

    incident = Incident.objects.get()
    assert incident.alert_fingerprint == parent_state.fingerprint
    related = incident_related_alerts(incident=incident)
    assert sorted(a.systems.get().name for a in related) == sorted(c.name for c in children)
    assert all(a.runs_on_id == engine.pk for a in related)
    # One round of pages: every notification is about this incident, each address once.
    notifications = list(Notification.objects.all())
    assert notifications and {n.about_id for n in notifications} == {str(incident.pk)}
    assert max(Counter(n.destination for n in notifications).values()) == 1
    assert AuditRecord.objects.filter(message__contains="held while its host").count() == len(
        children
    )

    client.force_login(dba_viewer)
    page = client.get(reverse("admin:incidents_incident_change", args=[incident.pk]))
    assert page.status_code == 200
    body = page.content.decode()
    assert body.count('class="related-alert"') == len(children)
    for child in children:
        assert child.name in body

    # The engine is back, its containers are not (no restart policy): each child is a fault
    # of its own now, handed over as its own incident, which pages.
    engine_b.start()
    collect([engine])
    incident.refresh_from_db()
    assert incident.status == "resolved"
    handed = Incident.objects.exclude(pk=incident.pk)
    assert sorted(i.affected_systems.get().name for i in handed) == sorted(c.name for c in children)
    for own in handed:
        assert Notification.objects.filter(about_id=str(own.pk)).exists()
    handovers = incident.timeline.filter(message__contains="handed over to its own incident")
    assert handovers.count() == len(children)
