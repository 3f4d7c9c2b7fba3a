"""An engine's pass keeps its containers' inspections and repeats only those no longer true:
a container that restarted, was updated or stopped is inspected again (its event, its state
in the listing, its main process gone), the others are not; and a restart whose event the
engine's buffer has dropped is still caught, by the listing's "Up …", on an engine that is
not on this host. On the real test engines."""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid

import docker.errors
import pytest
from django.core.cache import cache
from django.utils import timezone

from opsportal.monitoring import collectors
from opsportal.systems.adapters.docker_engine import client as engine_client
from opsportal.systems.adapters.docker_engine import engine as engine_adapter
from opsportal.systems.models import DockerEngine
from tests.conftest import TEST_IMAGE
from tests.workers import wait_until

pytestmark = pytest.mark.docker

WINDOW = dt.timedelta(minutes=5)


def figures_pass(engine, kept=None):
    return engine_adapter.engine_figures(engine, restarts_since=timezone.now() - WINDOW, kept=kept)


def by_id(figures, ids):
    return {c.container_id: c for c in figures.containers if c.container_id in ids}


# A kept inspection is trusted only for a change older than the events' slack and the
# listing's granularity (whole seconds): the test waits for its containers to settle so.
SETTLED_SECONDS = 4


def settled(docker_client, ids) -> bool:
    """Every container started, exited or restarted at least SETTLED_SECONDS ago, by the
    engine's own listing."""
    for container_id in ids:
        (summary,) = docker_client.api.containers(all=True, filters={"id": container_id})
        since = engine_adapter._listed_since_seconds(summary["Status"])
        if since is None or since < SETTLED_SECONDS:
            return False
    return True


@pytest.mark.parametrize(
    ("status", "seconds"),
    [
        ("Up Less than a second", 0),
        ("Up 1 second", 1),
        ("Up 45 seconds (healthy)", 45),
        ("Up About a minute", 60),
        ("Up 3 minutes (health: starting)", 180),
        ("Up About an hour (Paused)", 3600),
        ("Up 2 days", 172800),
        ("Exited (137) 5 seconds ago", 5),
        ("Restarting (1) 2 seconds ago", 2),
        ("Created", None),
        ("Dead", None),
    ],
)
def test_the_listing_says_how_long_ago_a_container_started_or_stopped(status, seconds):
    assert engine_adapter._listed_since_seconds(status) == seconds


def test_only_changed_containers_are_inspected_again(docker_engine, docker_client, run_container):
    restarted = run_container(["sleep", "600"])
    updated = run_container(["sleep", "600"], mem_limit="48m")
    stopped = run_container(["sleep", "600"])
    ours = {restarted.id, updated.id, stopped.id}
    wait_until(lambda: settled(docker_client, ours), "the containers to run for a while")

    first = figures_pass(docker_engine)
    assert ours <= first.inspected
    second = figures_pass(docker_engine, kept=first.inspections)
    assert not ours & second.inspected
    # What the kept inspections say is what inspecting gave.
    for container_id, figures in by_id(second, ours).items():
        before = by_id(first, ours)[container_id]
        assert (figures.name, figures.state, figures.restart_count, figures.created_at) == (
            before.name, before.state, before.restart_count, before.created_at,
        )  # fmt: skip
        assert figures.memory_limit_bytes == before.memory_limit_bytes
        assert figures.memory_bytes is not None and figures.cpu_usage_seconds is not None

    restarted.restart(timeout=0)
    updated.update(mem_limit="64m", memswap_limit="64m")
    stopped.kill()
    wait_until(
        lambda: (
            docker_client.containers.get(stopped.id).status == "exited"
            and settled(docker_client, ours)
        ),
        "the changes to settle",
    )
    third = figures_pass(docker_engine, kept=second.inspections)
    assert ours <= third.inspected
    now = by_id(third, ours)
    assert now[updated.id].memory_limit_bytes == 64 * 1024 * 1024
    assert now[stopped.id].state == "exited" and now[stopped.id].memory_bytes is None
    assert now[restarted.id].state == "running" and now[restarted.id].memory_bytes is not None
    assert now[restarted.id].restarts_recent == 1  # its second start, from the events

    fourth = figures_pass(docker_engine, kept=third.inspections)
    assert not ours & fourth.inspected


def test_the_collector_keeps_them_in_the_shared_cache(docker_engine, run_container):
    container = run_container(["sleep", "600"])
    key = collectors._inspections_key(docker_engine)
    cache.delete(key)
    collectors.collect_docker(docker_engine, {}, timezone.now())
    kept = cache.get(key)
    assert container.id in kept["containers"]
    assert kept["containers"][container.id]["State"]["Status"] == "running"


@pytest.fixture
def remote_engine(db, tls_engine_material):
    """The TLS engine over tcp://: not read through this host's kernel files, so only the
    events and the listing tell a kept inspection from a stale one."""
    engine = DockerEngine.objects.create(name="remote", timeout_seconds=20, **tls_engine_material)
    started = []

    def run(command):
        with engine_client(engine) as docker_client:
            container = docker_client.containers.run(
                TEST_IMAGE, command, name=f"opsportal-test-{uuid.uuid4().hex[:10]}",
                detach=True, network_mode="host",
            )  # fmt: skip
        started.append(container.id)
        return container

    yield engine, run
    with engine_client(engine) as docker_client:
        for container_id in started:
            with contextlib.suppress(docker.errors.NotFound):
                docker_client.containers.get(container_id).remove(force=True)


def test_a_restart_whose_event_was_dropped_is_still_caught(remote_engine):
    engine, run = remote_engine
    container = run(["sleep", "600"])
    with engine_client(engine) as docker_client:
        wait_until(
            lambda: docker_client.containers.get(container.id).status == "running", "the start"
        )
        first = figures_pass(engine)
        assert container.id in first.inspected
        docker_client.api.restart(container.id, timeout=0)
        restarted_at = timezone.now()
        # The engine keeps its last 256 events: 100 commands run in the container log 300
        # (exec_create, exec_start, exec_die) and push the restart's events out.
        for _ in range(100):
            docker_client.api.exec_start(docker_client.api.exec_create(container.id, ["true"]))
        events = engine_adapter._container_events(
            docker_client.api,
            since=(restarted_at - dt.timedelta(seconds=5)).timestamp(),
            until=timezone.now().timestamp() + 1,
        )
    assert not [e for e in events if engine_adapter._event_container(e) == container.id], (
        "the restart's events are still in the engine's buffer: the test proves nothing"
    )
    second = figures_pass(engine, kept=first.inspections)
    assert container.id in second.inspected
    (figures,) = by_id(second, {container.id}).values()
    assert figures.state == "running"
