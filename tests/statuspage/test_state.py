"""Component state follows the real monitoring: collection rounds against real systems (an
HTTP endpoint, a closed port, a container on the test Docker engine) and real alert rules."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.cache import cache
from django.utils import timezone

from opsportal.monitoring.models import AlertRule
from opsportal.statuspage import rules, services
from opsportal.statuspage.models import ComponentState
from opsportal.statuspage.tasks import refresh
from opsportal.systems.models import HttpEndpoint
from tests import realsystems
from tests.monitoring.conftest import collect_now


def collection_round() -> None:
    """One collection round, then the refresh it asked for, run as the worker runs it."""
    cache.delete(services.REFRESH_QUEUED_KEY)
    collect_now()
    assert cache.get(services.REFRESH_QUEUED_KEY), "the round asked for no refresh"
    refresh.apply()
    assert cache.get(services.REFRESH_QUEUED_KEY) is None


def state_of(component) -> str:
    component.refresh_from_db()
    return component.state


def test_a_healthy_endpoint_is_operational_and_a_dead_one_a_major_outage(components, http_endpoint):
    api = components["API"]
    api.systems.set([http_endpoint])
    dead = HttpEndpoint.objects.create(
        name="dead-api", url=f"http://127.0.0.1:{realsystems.free_port()}/", timeout_seconds=1
    )
    web = components["Web app"]
    web.systems.set([dead])
    collection_round()
    assert state_of(api) == ComponentState.OPERATIONAL
    assert state_of(web) == ComponentState.MAJOR_OUTAGE
    assert "dead-api: last probe failed" in web.state_reason
    # One of two systems down: a partial outage.
    api.systems.add(dead)
    services.status_refresh()
    assert state_of(api) == ComponentState.PARTIAL_OUTAGE


def test_a_firing_alert_degrades_the_component(components, http_endpoint):
    api = components["API"]
    api.systems.set([http_endpoint])
    AlertRule.objects.create(
        name="Test: any latency",
        metric="http_latency_ms",
        comparison="ge",
        threshold=0,
        keep_firing_seconds=0,
    )
    collection_round()
    assert state_of(api) == ComponentState.DEGRADED
    assert "alert 'Test: any latency' firing" in api.state_reason


def test_stale_figures_decide_nothing(components, http_endpoint):
    dead = HttpEndpoint.objects.create(
        name="dead-api", url=f"http://127.0.0.1:{realsystems.free_port()}/", timeout_seconds=1
    )
    api = components["API"]
    api.systems.set([dead])
    collection_round()
    assert state_of(api) == ComponentState.MAJOR_OUTAGE
    services.status_refresh(now=timezone.now() + dt.timedelta(hours=1))
    assert state_of(api) == ComponentState.OPERATIONAL


def test_the_rules_an_admin_reads_name_every_signal_the_code_uses():
    for phrase in ("up = 0", "container_running = 0", "http_error = 1", "major outage"):
        assert phrase in rules.RULES


@pytest.mark.docker
def test_a_stopped_container_is_an_outage_within_one_round_and_recovers(
    components, docker_engine, run_container, docker_client
):
    port = realsystems.free_port()
    container = run_container(["httpd", "-f", "-p", str(port), "-h", "/etc"])
    realsystems.wait_for_port(port)
    endpoint = HttpEndpoint.objects.create(
        name="web-frontend",
        url=f"http://127.0.0.1:{port}/hostname",
        timeout_seconds=2,
        docker_engine=docker_engine,
        container_name=container.name,
    )
    web = components["Web app"]
    web.systems.set([endpoint])
    collection_round()
    assert state_of(web) == ComponentState.OPERATIONAL, web.state_reason

    container.stop(timeout=1)
    collection_round()  # one collection interval
    assert state_of(web) == ComponentState.MAJOR_OUTAGE
    assert f"container {container.name} not running" in web.state_reason

    container.start()
    realsystems.wait_for_port(port)
    collection_round()
    assert state_of(web) == ComponentState.OPERATIONAL, web.state_reason
