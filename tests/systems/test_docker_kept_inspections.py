"""An engine's pass keeps its containers' inspections and repeats only those no longer true:
a container that restarted, was updated or stopped is inspected again (its event, its state
in the listing), the others are not, on this host's engine and on one read over the network;
when the engine's event buffer no longer reaches back to the last pass, everything is
inspected again. On the real test engines; and what the listing's "Up …" / "Exited (…) …
ago" tells of a kept inspection, with the engine's own status texts."""

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
    untouched = run_container(["sleep", "600"])
    ours = {restarted.id, updated.id, stopped.id}
    wait_until(
        lambda: settled(docker_client, ours | {untouched.id}), "the containers to run for a while"
    )

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
    assert ours <= third.inspected and untouched.id not in third.inspected
    now = by_id(third, ours)
    assert now[updated.id].memory_limit_bytes == 64 * 1024 * 1024
    assert now[stopped.id].state == "exited" and now[stopped.id].memory_bytes is None
    assert now[restarted.id].state == "running" and now[restarted.id].memory_bytes is not None
    assert now[restarted.id].restarts_recent == 1  # its second start, from the events

    fourth = figures_pass(docker_engine, kept=third.inspections)
    assert not ours & fourth.inspected


def test_kept_inspections_serve_when_the_kernel_files_are_not_readable(
    docker_engine, docker_client, run_container, tmp_path, monkeypatch
):
    """A worker in a container of its own sees the engine's socket but not the host's
    cgroup files: the kept inspections still serve, and the engine's stats give CPU and
    memory (rather than every running container being inspected again on every pass)."""
    container = run_container(["sleep", "600"])
    wait_until(lambda: settled(docker_client, {container.id}), "the container to run a while")
    first = figures_pass(docker_engine)
    monkeypatch.setattr(engine_adapter, "CGROUP_ROOT", tmp_path)  # nothing readable there
    second = figures_pass(docker_engine, kept=first.inspections)
    assert container.id not in second.inspected
    (figures,) = by_id(second, {container.id}).values()
    assert figures.memory_bytes and figures.cpu_usage_seconds is not None


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


def test_a_pass_after_the_engine_dropped_events_inspects_everything(remote_engine):
    engine, run = remote_engine
    restarted, untouched = run(["sleep", "600"]), run(["sleep", "600"])
    ours = {restarted.id, untouched.id}
    with engine_client(engine) as docker_client:
        wait_until(lambda: settled(docker_client, ours), "the containers to run for a while")
        first = figures_pass(engine)
        assert ours <= first.inspected
        # Nothing happened: on an engine read over the network too, both are kept.
        second = figures_pass(engine, kept=first.inspections)
        assert not ours & second.inspected
        restarted_at = timezone.now()
        docker_client.api.restart(restarted.id, timeout=0)
        # The engine keeps its last 256 events: 100 commands run in the other container log
        # 300 (exec_create, exec_start, exec_die) and push the restart's events out.
        for _ in range(100):
            docker_client.api.exec_start(docker_client.api.exec_create(untouched.id, ["true"]))
        events = engine_adapter._engine_events(
            docker_client.api,
            since=(restarted_at - dt.timedelta(seconds=5)).timestamp(),
            until=timezone.now().timestamp() + 1,
        )
    assert not [e for e in events if engine_adapter._event_container(e) == restarted.id], (
        "the restart's events are still in the engine's buffer: the test proves nothing"
    )
    # The buffer no longer reaches back to the last pass: no kept inspection is trusted.
    third = figures_pass(engine, kept=second.inspections)
    assert ours <= third.inspected
    assert by_id(third, {restarted.id})[restarted.id].state == "running"


KEPT_RUNNING = {"State": {"Status": "running", "Running": True}, "read_at": 1000.0}
KEPT_HEALTHY = {
    "State": {"Status": "running", "Running": True, "Health": {"Status": "healthy"}},
    "read_at": 1000.0,
}
KEPT_EXITED = {
    "State": {"Status": "exited", "Running": False, "Health": {"Status": "unhealthy"}},
    "read_at": 1000.0,
}


@pytest.mark.parametrize(
    ("kept", "state", "status", "trusted"),
    [
        # Listed 30 s after the inspection was kept:
        (KEPT_RUNNING, "running", "Up 2 minutes", True),
        (KEPT_RUNNING, "running", "Up 5 seconds", False),  # restarted since, event lost
        (KEPT_RUNNING, "exited", "Exited (137) 10 seconds ago", False),
        (KEPT_HEALTHY, "running", "Up 2 minutes (healthy)", True),
        (KEPT_HEALTHY, "running", "Up 2 minutes (unhealthy)", False),
        (KEPT_EXITED, "exited", "Exited (1) 10 minutes ago", True),  # no health while stopped
        (KEPT_EXITED, "exited", "Exited (1) 3 seconds ago", False),  # started and stopped again
    ],
)
def test_the_listing_tells_a_kept_inspection_from_a_stale_one(kept, state, status, trusted):
    summary = {"Id": "c1", "State": state, "Status": status}
    assert engine_adapter._still_true(kept, summary, set(), listed_at=1030.0) is trusted
    assert engine_adapter._still_true(kept, summary, {"c1"}, listed_at=1030.0) is False
    # Kept longer than INSPECTION_MAX_AGE_SECONDS: read again whatever the listing says.
    too_old = 1000.0 + engine_adapter.INSPECTION_MAX_AGE_SECONDS
    assert engine_adapter._still_true(kept, summary, set(), listed_at=too_old) is False
