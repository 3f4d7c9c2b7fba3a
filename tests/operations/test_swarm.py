"""Scaling a Swarm service (the runbook's "Scale containers if necessary" on Swarm), on the
second test engine, which is a one-node Swarm manager."""

import time
import uuid

import docker
import pytest

from opsportal.operations.models import OperationStatus
from opsportal.systems.adapters import docker_engine as docker_adapter
from opsportal.systems.models import DockerEngine

pytestmark = pytest.mark.django_db


@pytest.fixture
def swarm_engine(tls_engine_material) -> DockerEngine:
    return DockerEngine.objects.create(
        name="swarm-engine", timeout_seconds=10, **tls_engine_material
    )


@pytest.fixture
def swarm_service(swarm_engine):
    # The adapter's client: it ignores REQUESTS_CA_BUNDLE, so the engine's own CA is used.
    with docker_adapter.client(swarm_engine) as client:
        service = client.services.create(
            "opsportal-test/busybox:1",
            ["sleep", "600"],
            name=f"api-{uuid.uuid4().hex[:8]}",
            mode=docker.types.ServiceMode("replicated", replicas=1),
        )
        try:
            yield client, service
        finally:
            service.remove()


def running_tasks(client, service_name: str) -> int:
    service = client.services.get(service_name)
    return sum(1 for t in service.tasks() if t["Status"]["State"] == "running")


def test_scale_a_swarm_service_up_and_down(swarm_engine, swarm_service, run_operation):
    client, service = swarm_service
    operation = run_operation(
        "service_scale", swarm_engine, {"swarm_service": service.name, "replicas": 3}
    )
    assert operation.status == OperationStatus.SUCCEEDED, operation.error
    assert f"Swarm service {service.name} on swarm-engine: 1 → 3 replicas." in operation.output
    deadline = time.monotonic() + 60
    while running_tasks(client, service.name) < 3:
        assert time.monotonic() < deadline, "the Swarm did not start 3 replicas"
        time.sleep(0.5)

    operation = run_operation(
        "service_scale", swarm_engine, {"swarm_service": service.name, "replicas": 1}
    )
    assert operation.status == OperationStatus.SUCCEEDED, operation.error
    deadline = time.monotonic() + 60
    while running_tasks(client, service.name) > 1:
        assert time.monotonic() < deadline, "the Swarm did not scale down to 1 replica"
        time.sleep(0.5)


def test_scaling_a_swarm_service_that_does_not_exist(swarm_engine, run_operation):
    operation = run_operation(
        "service_scale", swarm_engine, {"swarm_service": "no-such-service", "replicas": 2}
    )
    assert operation.status == OperationStatus.FAILED
    assert "Swarm service 'no-such-service' does not exist on Docker engine swarm-engine" in (
        operation.error
    )
