"""One container at a time, by name: where to reach it, list, inspect, logs, resource use,
restart/stop/start, `docker update` of its limits, and isolating it (the runbook's "Container
Issues" and security incident response's "Isolate affected systems").
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import docker
import docker.errors

from opsportal.systems.adapters.docker_engine.connection import client
from opsportal.systems.adapters.errors import NotFound, OperationFailed, Unreachable

if TYPE_CHECKING:
    from opsportal.systems.models import DockerEngine


def container_address(engine: DockerEngine, container_name: str) -> str:
    """The address another process reaches the container at (host networking: the host)."""
    with client(engine) as docker_client:
        try:
            container = docker_client.containers.get(container_name)
        except docker.errors.NotFound as exc:
            raise NotFound(
                f"Container {container_name!r} does not exist on Docker engine {engine.name}."
            ) from exc
    # A stopped host-networked container still says NetworkMode=host; without this check the
    # caller would reach whatever else listens on the host and call the system up.
    if container.status != "running":
        raise Unreachable(
            f"Container {container_name!r} on Docker engine {engine.name} is not running "
            f"(it is {container.status})."
        )
    settings = container.attrs.get("NetworkSettings", {})
    for network in (settings.get("Networks") or {}).values():
        if network.get("IPAddress"):
            return network["IPAddress"]
    if container.attrs.get("HostConfig", {}).get("NetworkMode") == "host":
        return "127.0.0.1"
    raise OperationFailed(
        f"Container {container_name!r} on {engine.name} has no network address to connect to."
    )


def _get_container(docker_client: docker.DockerClient, engine: DockerEngine, name: str):
    try:
        return docker_client.containers.get(name)
    except docker.errors.NotFound as exc:
        raise NotFound(
            f"Container {name!r} does not exist on Docker engine {engine.name}."
        ) from exc


def _container_row(attrs: dict) -> dict:
    state = attrs.get("State") or {}
    labels = (attrs.get("Config") or {}).get("Labels") or {}
    return {
        "name": (attrs.get("Name") or "").lstrip("/"),
        "id": attrs.get("Id", "")[:12],
        "image": (attrs.get("Config") or {}).get("Image", ""),
        "state": state.get("Status", "unknown"),
        "health": (state.get("Health") or {}).get("Status"),
        "restart_count": int(attrs.get("RestartCount") or 0),
        "oom_killed": bool(state.get("OOMKilled")),
        "exit_code": state.get("ExitCode"),
        "started_at": state.get("StartedAt"),
        "compose_project": labels.get("com.docker.compose.project"),
        "compose_service": labels.get("com.docker.compose.service"),
    }


def containers_list(engine: DockerEngine, *, name_contains: str = "") -> list[dict]:
    """Every container (running or not) with state, health and restart count."""
    with client(engine) as docker_client:
        api = docker_client.api
        rows = []
        for summary in api.containers(all=True):
            names = [n.lstrip("/") for n in summary.get("Names") or []]
            if name_contains and not any(name_contains in n for n in names):
                continue
            try:
                rows.append(_container_row(api.inspect_container(summary["Id"])))
            except docker.errors.NotFound:
                continue  # removed between the listing and the inspection
    return sorted(rows, key=lambda row: row["name"])


def container_inspect(engine: DockerEngine, name: str) -> dict:
    with client(engine) as docker_client:
        return _get_container(docker_client, engine, name).attrs


def container_logs(
    engine: DockerEngine,
    name: str,
    *,
    lines: int | None = 200,
    since_minutes: int | None = None,
    now: dt.datetime | None = None,
) -> str:
    """The container's last `lines` log lines (stdout and stderr), optionally only those of
    the `since_minutes` before `now` (the engine's clock is the host's)."""
    kwargs: dict = {"stdout": True, "stderr": True, "timestamps": True}
    kwargs["tail"] = lines if lines else "all"
    if since_minutes:
        now = now or dt.datetime.now(dt.UTC)
        kwargs["since"] = now - dt.timedelta(minutes=since_minutes)
    with client(engine) as docker_client:
        container = _get_container(docker_client, engine, name)
        raw = container.logs(**kwargs)
    return raw.decode("utf-8", errors="replace")


def container_stats(engine: DockerEngine, name: str) -> dict:
    """CPU % (over the engine's one-second sample), memory used and its limit, as `docker
    stats` shows them."""
    with client(engine) as docker_client:
        container = _get_container(docker_client, engine, name)
        if container.status != "running":
            raise OperationFailed(
                f"Container {name!r} on {engine.name} is {container.status}, not running: "
                "it has no resource usage to show."
            )
        stats = container.stats(stream=False)
        host_config = container.attrs.get("HostConfig") or {}
    cpu, precpu = stats.get("cpu_stats") or {}, stats.get("precpu_stats") or {}
    cpu_delta = (cpu.get("cpu_usage") or {}).get("total_usage", 0) - (
        precpu.get("cpu_usage") or {}
    ).get("total_usage", 0)
    system_delta = (cpu.get("system_cpu_usage") or 0) - (precpu.get("system_cpu_usage") or 0)
    cpus = (
        cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or []) or 1
    )
    cpu_percent = cpu_delta / system_delta * cpus * 100 if system_delta > 0 else 0.0
    memory_stats = stats.get("memory_stats") or {}
    inner = memory_stats.get("stats") or {}
    usage = memory_stats.get("usage")
    if usage is not None:
        usage = max(usage - inner.get("inactive_file", inner.get("total_inactive_file", 0)), 0)
    configured = host_config.get("Memory") or 0
    limit = configured or memory_stats.get("limit")
    return {
        "cpu_percent": round(cpu_percent, 2),
        "online_cpus": cpus,
        "cpu_limit": (host_config.get("NanoCpus") or 0) / 1e9
        or (
            host_config.get("CpuQuota") / host_config.get("CpuPeriod")
            if host_config.get("CpuQuota") and host_config.get("CpuPeriod")
            else None
        ),
        "memory_bytes": usage,
        "memory_limit_bytes": limit,
        "memory_limit_configured": bool(configured),
        "memory_percent": round(usage / limit * 100, 2) if usage is not None and limit else None,
        "pids": (stats.get("pids_stats") or {}).get("current"),
    }


def container_restart(engine: DockerEngine, name: str, *, timeout_seconds: int = 10) -> dict:
    with client(engine) as docker_client:
        container = _get_container(docker_client, engine, name)
        container.restart(timeout=timeout_seconds)
        container.reload()
        return _container_row(container.attrs)


def container_stop(engine: DockerEngine, name: str, *, timeout_seconds: int = 10) -> dict:
    with client(engine) as docker_client:
        container = _get_container(docker_client, engine, name)
        container.stop(timeout=timeout_seconds)
        container.reload()
        return _container_row(container.attrs)


def container_start(engine: DockerEngine, name: str) -> dict:
    with client(engine) as docker_client:
        container = _get_container(docker_client, engine, name)
        container.start()
        container.reload()
        return _container_row(container.attrs)


def container_update_limits(
    engine: DockerEngine,
    name: str,
    *,
    memory_bytes: int | None = None,
    cpus: float | None = None,
) -> dict:
    """Change the memory and/or CPU limit of a running container (`docker update`)."""
    period = 100_000
    kwargs: dict = {}
    if memory_bytes:
        # Swap limit = memory limit: no extra swap, the same as `docker update --memory`.
        kwargs.update(mem_limit=memory_bytes, memswap_limit=memory_bytes)
    if cpus:
        kwargs.update(cpu_period=period, cpu_quota=int(cpus * period))
    with client(engine) as docker_client:
        container = _get_container(docker_client, engine, name)
        if (container.attrs.get("HostConfig") or {}).get("NanoCpus") and cpus:
            raise OperationFailed(
                f"Container {name!r} was started with --cpus; the engine cannot change that "
                "limit on a running container. Recreate it with the new limit."
            )
        docker_client.api.update_container(container.id, **kwargs)
        container.reload()
        host_config = container.attrs.get("HostConfig") or {}
    return {
        "memory_limit_bytes": host_config.get("Memory") or None,
        "cpu_quota": host_config.get("CpuQuota") or None,
        "cpu_period": host_config.get("CpuPeriod") or None,
    }


def container_isolate(engine: DockerEngine, name: str, *, method: str = "auto") -> dict:
    """Cut a container off (security incident response's "Isolate affected systems").

    disconnect: remove it from every network it is attached to (it keeps running, so its
    memory and processes stay there to examine); pause: freeze its processes; stop: stop it.
    auto: disconnect when it has networks that can be disconnected, otherwise pause.
    """
    with client(engine) as docker_client:
        container = _get_container(docker_client, engine, name)
        networks = list(
            ((container.attrs.get("NetworkSettings") or {}).get("Networks") or {}).keys()
        )
        mode = (container.attrs.get("HostConfig") or {}).get("NetworkMode") or ""
        detachable = [n for n in networks if n not in {"host", "none"}]
        steps: list[str] = []
        chosen = method
        if method == "auto":
            chosen = "disconnect" if detachable else "pause"
            if not detachable:
                steps.append(
                    f"It uses {mode or 'no'} networking, which cannot be disconnected; "
                    "paused it instead."
                )
        if chosen == "disconnect":
            if not detachable:
                raise OperationFailed(
                    f"Container {name!r} uses {mode or 'no'} networking, which cannot be "
                    "disconnected; isolate it with pause or stop instead."
                )
            for network_name in detachable:
                docker_client.networks.get(network_name).disconnect(container, force=True)
                steps.append(f"Disconnected from network {network_name}.")
        elif chosen == "pause":
            if container.status != "running":
                raise OperationFailed(f"Container {name!r} is {container.status}; cannot pause.")
            container.pause()
            steps.append("Paused its processes (memory kept for examination).")
        elif chosen == "stop":
            container.stop(timeout=10)
            steps.append("Stopped it.")
        container.reload()
    return {"method": chosen, "steps": steps, "state": container.status}
