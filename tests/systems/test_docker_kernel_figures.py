"""A container's CPU and memory figures, for an engine on this host, from the kernel's cgroup
files: the same figures the engine's stats API gives (which waits up to a second for the
engine's stats tick), and never another process's."""

from __future__ import annotations

import os

import pytest

from opsportal.systems.adapters.docker_engine import engine as engine_adapter
from tests.workers import wait_until

pytestmark = pytest.mark.docker

MEMORY_SLACK = 1024 * 1024


def test_kernel_figures_match_the_engine_stats(docker_engine, docker_client, run_container):
    container = run_container(["sh", "-c", "echo started; sleep 600"])
    wait_until(lambda: b"started" in container.logs(), "the container to start")
    container.reload()
    state = container.attrs["State"]
    kernel = engine_adapter._kernel_figures(state["Pid"], container.id)
    assert kernel is not None
    api_cpu, api_memory = engine_adapter._stats_figures(docker_client.api, container.id)
    cpu, memory = kernel
    # The two reads are up to a second apart (the API waits for its stats tick) and a tiny
    # container's page cache moves by a few hundred KiB meanwhile: agreement within 1 MiB
    # still tells the right cgroup from any other.
    assert memory == pytest.approx(api_memory, rel=0.05, abs=MEMORY_SLACK) and memory > 0
    assert cpu == pytest.approx(api_cpu, rel=0.05, abs=0.05)

    figures = engine_adapter.engine_figures(docker_engine)
    (mine,) = [c for c in figures.containers if c.container_id == container.id]
    assert mine.memory_bytes == pytest.approx(api_memory, rel=0.05, abs=MEMORY_SLACK)
    assert mine.cpu_usage_seconds >= cpu


def test_a_process_outside_the_container_lends_no_figures(docker_client, run_container):
    container = run_container(["sleep", "600"])
    # This test's own process is not in the container's cgroups (as a reused PID would not
    # be): no figure, so the collector asks the engine instead.
    assert engine_adapter._kernel_figures(os.getpid(), container.id) is None
    assert engine_adapter._kernel_figures(None, container.id) is None
