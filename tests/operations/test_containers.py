"""Container operations against the test Docker engine, with real containers."""

import contextlib
import datetime as dt
import hashlib
import time
from pathlib import Path

import docker
import pytest

from opsportal.operations.models import Evidence, OperationStatus
from opsportal.systems.adapters.docker_engine import container_logs
from opsportal.systems.models import DockerEngine, HttpEndpoint

pytestmark = pytest.mark.docker


def wait_until(predicate, timeout=15.0, interval=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


@pytest.fixture
def api_container(run_container, docker_engine):
    """A container running a real HTTP server, registered as the API it serves."""
    container = run_container(["sh", "-c", "echo api starting; echo ready; exec sleep 600"])
    endpoint = HttpEndpoint.objects.create(
        name="api",
        url="http://127.0.0.1:9/health",
        docker_engine=docker_engine,
        container_name=container.name,
    )
    return container, endpoint


def test_list_shows_a_crash_looping_containers_restarts(
    run_container, docker_engine, run_operation
):
    crashing = run_container(["sh", "-c", "echo boom; exit 3"], restart_policy={"Name": "always"})
    assert wait_until(lambda: (crashing.reload() or crashing.attrs["RestartCount"]) >= 1)
    operation = run_operation("container_list", docker_engine, {"name_contains": crashing.name})
    assert operation.status == OperationStatus.SUCCEEDED, operation.error
    (row,) = operation.result["containers"]
    assert row["name"] == crashing.name and row["restart_count"] >= 1
    assert crashing.name in operation.output and operation.finished_at >= operation.started_at


def test_logs_of_the_api_container(api_container, run_operation):
    _, endpoint = api_container
    operation = run_operation("container_logs", endpoint, {"lines": 1})
    assert operation.status == OperationStatus.SUCCEEDED, operation.error
    assert "ready" in operation.output and "api starting" not in operation.output


def test_inspect_masks_secret_environment(run_container, docker_engine, run_operation):
    container = run_container("sleep 600", environment={"DB_PASSWORD": "hunter2", "MODE": "prod"})
    operation = run_operation("container_inspect", docker_engine, {"container": container.name})
    assert operation.status == OperationStatus.SUCCEEDED, operation.error
    assert "hunter2" not in operation.output and "DB_PASSWORD=********" in operation.output
    assert "MODE=prod" in operation.output


def test_stats_of_running_and_of_stopped_container(run_container, docker_engine, run_operation):
    busy = run_container(["sh", "-c", "while :; do :; done"], mem_limit="64m")
    operation = run_operation("container_stats", docker_engine, {"container": busy.name})
    assert operation.status == OperationStatus.SUCCEEDED, operation.error
    assert operation.result["memory_limit_bytes"] == 64 * 1024 * 1024
    assert operation.result["cpu_percent"] > 1
    assert "CPU" in operation.output and "of 64.0 MiB" in operation.output

    stopped = run_container("true")
    assert wait_until(lambda: (stopped.reload() or stopped.status) == "exited")
    operation = run_operation("container_stats", docker_engine, {"container": stopped.name})
    assert operation.status == OperationStatus.FAILED
    assert "is exited, not running" in operation.error


def test_restart_stop_and_start(api_container, run_operation, docker_client):
    container, endpoint = api_container
    started_before = container.attrs["State"]["StartedAt"]
    operation = run_operation("container_restart", endpoint, {"timeout_seconds": 1})
    assert operation.status == OperationStatus.SUCCEEDED, operation.error
    assert "is now running" in operation.output
    container.reload()
    assert container.attrs["State"]["StartedAt"] != started_before

    operation = run_operation("container_stop", endpoint, {"timeout_seconds": 1})
    assert operation.status == OperationStatus.SUCCEEDED, operation.error
    assert docker_client.containers.get(container.name).status == "exited"
    operation = run_operation("container_start", endpoint)
    assert operation.status == OperationStatus.SUCCEEDED, operation.error
    assert docker_client.containers.get(container.name).status == "running"


def test_unknown_container_and_stopped_engine_say_so(docker_engine, run_operation, tmp_path):
    operation = run_operation("container_restart", docker_engine, {"container": "no-such-api"})
    assert operation.status == OperationStatus.FAILED
    assert operation.error == "Container 'no-such-api' does not exist on Docker engine test-engine."
    dead = DockerEngine.objects.create(
        name="dead-engine", base_url=f"unix://{tmp_path}/docker.sock", timeout_seconds=2
    )
    operation = run_operation("container_logs", dead, {"container": "api"})
    assert operation.status == OperationStatus.FAILED
    assert "is not reachable: its socket does not exist" in operation.error


def test_scale_a_compose_service_up_and_down(
    run_container, docker_engine, docker_client, run_operation
):
    project = f"shop{int(time.time() * 1000) % 10**8}"
    labels = {
        "com.docker.compose.project": project,
        "com.docker.compose.service": "api",
        "com.docker.compose.container-number": "1",
        "com.docker.compose.oneoff": "False",
    }
    first = run_container("sleep 600", name=f"{project}-api-1", labels=labels)
    try:
        operation = run_operation(
            "service_scale", docker_engine, {"container": first.name, "replicas": 3}
        )
        assert operation.status == OperationStatus.SUCCEEDED, operation.error
        assert operation.result["created"] == [f"{project}-api-2", f"{project}-api-3"]
        replicas = docker_client.containers.list(
            filters={
                "label": [f"com.docker.compose.project={project}", "com.docker.compose.service=api"]
            }
        )
        assert sorted(c.labels["com.docker.compose.container-number"] for c in replicas) == [
            "1",
            "2",
            "3",
        ]
        assert all(
            c.status == "running" and c.attrs["HostConfig"]["NetworkMode"] == "host"
            for c in replicas
        )

        operation = run_operation(
            "service_scale", docker_engine, {"container": first.name, "replicas": 1}
        )
        assert operation.status == OperationStatus.SUCCEEDED, operation.error
        assert operation.result["removed"] == [f"{project}-api-3", f"{project}-api-2"]
        assert "3 → 1 containers" in operation.output
    finally:
        for n in (2, 3):
            with contextlib.suppress(docker.errors.NotFound):
                docker_client.containers.get(f"{project}-api-{n}").remove(force=True)


def test_scaling_needs_compose_labels_or_a_swarm(run_container, docker_engine, run_operation):
    plain = run_container("sleep 600")
    operation = run_operation(
        "service_scale", docker_engine, {"container": plain.name, "replicas": 2}
    )
    assert operation.status == OperationStatus.FAILED
    assert "has no Compose labels" in operation.error
    operation = run_operation(
        "service_scale", docker_engine, {"swarm_service": "api", "replicas": 2}
    )
    assert operation.status == OperationStatus.FAILED
    assert "not a Swarm manager" in operation.error or "does not exist" in operation.error


def test_change_memory_limit(run_container, docker_engine, run_operation):
    container = run_container("sleep 600", mem_limit="32m")
    operation = run_operation(
        "container_update_limits", docker_engine, {"container": container.name, "memory_mb": 96}
    )
    assert operation.status == OperationStatus.SUCCEEDED, operation.error
    container.reload()
    assert container.attrs["HostConfig"]["Memory"] == 96 * 1024 * 1024
    assert "memory limit 96.0 MiB" in operation.output


def test_engine_events_show_a_restart(api_container, docker_engine, run_operation):
    container, _ = api_container
    container.restart(timeout=1)
    operation = run_operation("engine_events", docker_engine, {"since_minutes": 5})
    assert operation.status == OperationStatus.SUCCEEDED, operation.error
    actions = {(e["actor"], e["action"]) for e in operation.result["events"]}
    assert (container.name, "restart") in actions
    assert "die/oom/kill/restart" in operation.output


def test_isolate_a_host_networked_container_pauses_it(run_container, docker_engine, run_operation):
    container = run_container("sleep 600")
    operation = run_operation("container_isolate", docker_engine, {"container": container.name})
    assert operation.status == OperationStatus.SUCCEEDED, operation.error
    container.reload()
    assert container.status == "paused"
    assert "cannot be disconnected; paused it instead" in operation.output
    container.unpause()
    operation = run_operation(
        "container_isolate", docker_engine, {"container": container.name, "method": "disconnect"}
    )
    assert operation.status == OperationStatus.FAILED
    assert "uses host networking, which cannot be disconnected" in operation.error


def test_isolate_disconnects_a_container_from_its_networks(
    run_container, docker_client, docker_engine, run_operation
):
    """On a user-defined bridge network (as Compose creates them) isolation disconnects the
    container and leaves it running, its processes and memory there to examine."""
    import uuid

    network = docker_client.networks.create(f"opsportal-test-net-{uuid.uuid4().hex[:8]}")
    try:
        container = run_container("sleep 600", network_mode=None, network=network.name)
        container.reload()
        assert network.name in container.attrs["NetworkSettings"]["Networks"]
        operation = run_operation("container_isolate", docker_engine, {"container": container.name})
        assert operation.status == OperationStatus.SUCCEEDED, operation.error
        assert f"Disconnected from network {network.name}." in operation.output
        container.reload()
        assert container.status == "running"
        assert network.name not in (container.attrs["NetworkSettings"]["Networks"] or {})
    finally:
        for attached in docker_client.containers.list(all=True, filters={"network": network.id}):
            attached.remove(force=True)
        network.remove()


def test_preserve_evidence_with_checksums(
    run_container, docker_engine, run_operation, settings, tmp_path
):
    settings.MEDIA_ROOT = tmp_path
    container = run_container(
        ["sh", "-c", "echo intruder was here > /tmp/dropped; echo pwned; sleep 600"]
    )
    assert wait_until(lambda: b"pwned" in container.logs())
    operation = run_operation(
        "evidence_preserve", docker_engine, {"container": container.name, "export_filesystem": True}
    )
    assert operation.status == OperationStatus.SUCCEEDED, operation.error
    items = {e.name: e for e in Evidence.objects.filter(operation=operation)}
    assert set(items) == {"logs.txt", "inspect.json", "diff.json", "filesystem.tar"}
    for item in items.values():
        content = (Path(settings.MEDIA_ROOT) / item.path).read_bytes()
        assert hashlib.sha256(content).hexdigest() == item.sha256
        assert len(content) == item.size_bytes
        assert item.captured_by == operation.requested_by and item.captured_at
    diff = (Path(settings.MEDIA_ROOT) / items["diff.json"].path).read_text()
    assert "/tmp/dropped" in diff
    assert b"pwned" in (Path(settings.MEDIA_ROOT) / items["logs.txt"].path).read_bytes()


def test_database_container_logs(run_container, docker_engine, postgres_target, run_operation):
    container = run_container(
        ["sh", "-c", "echo 'FATAL: sorry, too many clients already'; sleep 600"]
    )
    assert wait_until(lambda: b"FATAL" in container.logs())
    postgres_target.docker_engine, postgres_target.container_name = docker_engine, container.name
    postgres_target.save()
    operation = run_operation("db_container_logs", postgres_target, {"lines": 50})
    assert operation.status == OperationStatus.SUCCEEDED, operation.error
    assert "too many clients already" in operation.output


# --- gaps found auditing issue 3 against the tests ----------------------------------------


def test_list_shows_health_from_the_containers_healthcheck(
    run_container, docker_engine, run_operation
):
    """The runbook's "Containers not starting": the list reports each container's health,
    from a real healthcheck that passes and one that fails."""
    second = 1_000_000_000
    healthy = run_container(
        "sleep 600", healthcheck={"test": ["CMD", "true"], "interval": second, "retries": 1}
    )
    sick = run_container(
        "sleep 600", healthcheck={"test": ["CMD", "false"], "interval": second, "retries": 1}
    )

    def health(container):
        container.reload()
        return (container.attrs["State"].get("Health") or {}).get("Status")

    assert wait_until(lambda: health(healthy) == "healthy" and health(sick) == "unhealthy")
    operation = run_operation("container_list", docker_engine, {"name_contains": "opsportal"})
    assert operation.status == OperationStatus.SUCCEEDED, operation.error
    rows = {r["name"]: r for r in operation.result["containers"]}
    assert rows[healthy.name]["health"] == "healthy"
    assert rows[sick.name]["health"] == "unhealthy"
    assert rows[healthy.name]["state"] == "running"
    assert "unhealthy or restarting" in operation.output


def test_logs_since_a_time_leave_out_older_lines(run_container, docker_engine, run_operation):
    """Logs "since T": a line written before the window is left out, one inside it kept.
    The operation counts back from now: both lines of the last minute are shown; the window
    itself is checked on the engine with the adapter's clock set to a minute after the
    second line, so that the first one (3 s older) has just left it."""
    container = run_container(["sh", "-c", "echo early-line; sleep 3; echo late-line; sleep 600"])
    assert wait_until(lambda: b"late-line" in container.logs(), timeout=20)
    both = run_operation(
        "container_logs", docker_engine, {"container": container.name, "since_minutes": 1}
    )
    assert both.status == OperationStatus.SUCCEEDED, both.error
    assert "early-line" in both.output and "late-line" in both.output
    assert "(last 1 min)" in both.output
    stamped = container.logs(timestamps=True).decode()
    late_stamp = next(line for line in stamped.splitlines() if "late-line" in line).split()[0]
    late_at = dt.datetime.fromisoformat(late_stamp[:26] + "+00:00")
    minute_after = late_at + dt.timedelta(seconds=60 - 1.5)
    recent = container_logs(docker_engine, container.name, since_minutes=1, now=minute_after)
    assert "late-line" in recent and "early-line" not in recent


def test_change_cpu_limit(run_container, docker_engine, run_operation):
    container = run_container("sleep 600")
    operation = run_operation(
        "container_update_limits", docker_engine, {"container": container.name, "cpus": 0.5}
    )
    assert operation.status == OperationStatus.SUCCEEDED, operation.error
    container.reload()
    host = container.attrs["HostConfig"]
    assert host["CpuQuota"] / host["CpuPeriod"] == 0.5
    assert "CPU limit 0.5 CPUs" in operation.output


def test_engine_info_is_reported_with_the_events(docker_engine, docker_client, run_operation):
    operation = run_operation("engine_events", docker_engine, {"since_minutes": 5})
    assert operation.status == OperationStatus.SUCCEEDED, operation.error
    version = docker_client.version()["Version"]
    assert operation.output.startswith(f"Docker {version} on {docker_engine.name}: ")
    assert f"{docker_client.info()['NCPU']} CPUs" in operation.output


def test_isolate_by_stopping_the_container(run_container, docker_engine, run_operation):
    container = run_container("sleep 600")
    operation = run_operation(
        "container_isolate", docker_engine, {"container": container.name, "method": "stop"}
    )
    assert operation.status == OperationStatus.SUCCEEDED, operation.error
    container.reload()
    assert container.status == "exited"
    assert operation.output.endswith("It is now exited.")


def test_a_failed_operation_says_why_on_its_incidents_timeline(docker_engine, operator, tmp_path):
    """Bad input and faults give their specific message on the operation AND the timeline:
    an unknown container and a stopped engine, requested from an incident."""
    from incidents.models import TimelineKind
    from incidents.services import incident_open
    from opsportal.operations.services import operation_request
    from opsportal.operations.tasks import execute_operation
    from opsportal.people.services import people_load_defaults

    people_load_defaults()
    dead = DockerEngine.objects.create(
        name="dead-engine", base_url=f"unix://{tmp_path}/docker.sock", timeout_seconds=2
    )
    incident = incident_open(
        title="api down",
        severity="sev3",
        category="container",
        affected_systems=[docker_engine, dead],
    )
    for target, params, expected in [
        (
            docker_engine,
            {"container": "no-such-api"},
            "Container 'no-such-api' does not exist on Docker engine test-engine.",
        ),
        (dead, {"container": "api"}, "is not reachable: its socket does not exist"),
    ]:
        operation = operation_request(
            kind="container_logs",
            target=target,
            params=params,
            actor=operator,
            incident=incident,
        )
        execute_operation.apply(args=[operation.pk])
        operation.refresh_from_db()
        assert operation.status == OperationStatus.FAILED and expected in operation.error
        event = incident.timeline.filter(kind=TimelineKind.OPERATION).last()
        assert expected in event.message, event.message
        assert event.message.startswith(f"Container logs on {target.name} failed")
