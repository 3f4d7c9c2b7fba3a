"""Issue 16: the overview stays readable with many open incidents (counts by severity, my
team's and the newest first, a link to the rest), marks figures beyond their alert rule's
line, greys out figures of a system that is down, and keeps its query count constant."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from incidents.services import incident_open, incidents_load_defaults
from opsportal.access import groups_load_defaults
from opsportal.monitoring.services import (
    alerts_evaluate,
    monitoring_load_defaults,
    samples_store,
)
from opsportal.people.models import Responsibility, Team
from opsportal.people.services import people_load_defaults
from opsportal.systems.models import DockerEngine, HttpEndpoint
from tests.signin import TwoFactorClient


@pytest.fixture
def engineer(db):
    groups_load_defaults()
    people_load_defaults()
    incidents_load_defaults()
    monitoring_load_defaults()
    user = get_user_model().objects.create_user("erin", password="pw-erin-123!", is_staff=True)
    user.groups.add(Group.objects.get(name="On-call engineers"))
    Team.objects.get(responsibility=Responsibility.DEVOPS).members.add(user)
    client = TwoFactorClient()
    client.force_login(user)
    return client, user


def open_incidents(count: int, *, team=None, severity="sev3", prefix="other") -> list:
    return [
        incident_open(
            title=f"{prefix} incident {i}", severity=severity, category="other", team=team
        )
        for i in range(count)
    ]


def overview_queries(client) -> tuple[int, str]:
    with CaptureQueriesContext(connection) as ctx:
        page = client.get("/admin/")
    assert page.status_code == 200
    return len(ctx.captured_queries), page.content.decode()


def test_many_open_incidents_my_team_first_counts_and_a_link_to_the_rest(engineer):
    client, _ = engineer
    devops = Team.objects.get(responsibility=Responsibility.DEVOPS)
    other = Team.objects.get(responsibility=Responsibility.DATABASE)
    mine = open_incidents(2, team=devops, prefix="mine")  # the oldest two
    open_incidents(10, team=other, severity="sev2")
    open_incidents(2, team=other, severity="sev1", prefix="urgent")

    html = client.get("/admin/").content.decode()
    rows = re.findall(r'<tr class="ov-incident( ov-mine)?" data-incident="(\d+)"', html)
    assert len(rows) == 10
    # My team's first (though older), then the newest.
    assert [int(pk) for _, pk in rows[:2]] == sorted((i.pk for i in mine), reverse=True)
    assert all(flag for flag, _ in rows[:2]) and not any(flag for flag, _ in rows[2:])
    assert "urgent incident 1" in html  # newest of the rest
    assert "SEV1: 2</span>" in html and "SEV2: 10</span>" in html and "SEV3: 2</span>" in html
    link = re.search(r'<a id="ov-incidents-all" href="([^"]+)">4 more: all 14 open', html)
    assert link, "a link to the rest of the open incidents"
    listing = client.get(link.group(1).replace("&amp;", "&"))
    assert listing.status_code == 200
    assert listing.context["cl"].result_count == 14


def test_query_count_stays_constant_with_many_incidents_and_alerts(engineer, docker_host):
    client, _ = engineer
    engine = DockerEngine.objects.create(name="web-host", base_url=docker_host)
    open_incidents(1, team=Team.objects.get(responsibility=Responsibility.DEVOPS))
    now = timezone.now()
    alerts_evaluate(
        values={(engine.pk, "container_restarts_5m", "worker-0"): (5.0, now)},
        systems={engine.pk: engine},
    )
    before, _ = overview_queries(client)
    open_incidents(20)
    alerts_evaluate(
        values={(engine.pk, "container_restarts_5m", f"worker-{i}"): (5.0, now) for i in range(8)},
        systems={engine.pk: engine},
    )
    after, html = overview_queries(client)
    assert html.count('class="ov-alert"') == 8
    assert html.count("ov-run-step") == 8  # each alert links to its incident's fix
    assert after == before


def test_figures_beyond_their_rule_are_marked_and_a_down_systems_are_greyed(engineer):
    client, _ = engineer
    slow = HttpEndpoint.objects.create(name="slow-api", url="http://127.0.0.1:9/slow")
    gone = HttpEndpoint.objects.create(name="gone-api", url="http://127.0.0.1:9/gone")
    earlier = timezone.now() - dt.timedelta(minutes=7)
    samples_store(
        values={
            (slow.pk, "up", ""): (1.0, earlier),
            (slow.pk, "http_latency_p95_ms", ""): (900.0, earlier),
            (slow.pk, "http_error_rate_percent", ""): (1.0, earlier),
            (gone.pk, "http_latency_p95_ms", ""): (120.0, earlier),
            (gone.pk, "http_error_rate_percent", ""): (0.0, earlier),
        }
    )
    samples_store(values={(gone.pk, "up", ""): (0.0, timezone.now())})
    html = client.get("/admin/").content.decode()

    def figure(system: str, metric: str) -> str:
        row = html.split(f'data-system="{system}"', 1)[1].split("</tr>", 1)[0]
        return re.search(
            rf'<div class="ov-figure[^"]*" data-metric="{metric}".*?</div>', row
        ).group(0)

    p95 = figure("slow-api", "http_latency_p95_ms")
    assert 'class="ov-figure ov-beyond"' in p95
    assert "beyond its alert rule (above 500 ms)" in p95
    assert "ov-beyond" not in figure("slow-api", "http_error_rate_percent")  # 1 % < 5 %

    stale = figure("gone-api", "http_latency_p95_ms")
    assert 'class="ov-figure ov-stale"' in stale
    when = timezone.localtime(earlier).strftime("%a %-d %b %H:%M")
    assert f"stale: the system is down; last collected {when} UTC" in stale
    assert "ov-stale" not in figure("slow-api", "http_latency_p95_ms")
