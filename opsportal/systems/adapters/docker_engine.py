"""Adapter for Docker engines (the Docker SDK), with timeouts and operator-readable errors."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, BinaryIO

import docker
import docker.constants
import docker.errors
import docker.tls
import paramiko
import requests
from paramiko.ssh_exception import NoValidConnectionsError

from opsportal.systems.adapters.errors import (
    AdapterError,
    AuthenticationFailed,
    NotFound,
    OperationFailed,
    TimedOut,
    Unreachable,
)
from opsportal.systems.adapters.results import PingResult

if TYPE_CHECKING:
    import datetime as dt

    from opsportal.systems.models import DockerEngine


def translate_error(engine: DockerEngine, exc: Exception) -> AdapterError:
    where = f"Docker engine {engine.name} at {engine.base_url}"
    if isinstance(exc, AdapterError):
        return exc
    if isinstance(exc, docker.errors.NotFound):
        return NotFound(f"{where}: {exc.explanation or 'not found'}")
    if isinstance(exc, requests.exceptions.Timeout) or "timed out" in str(exc).lower():
        return TimedOut(f"{where} did not answer within {engine.timeout_seconds:g} s.")
    if isinstance(exc, docker.errors.APIError):
        if exc.status_code in (401, 403):
            return AuthenticationFailed(f"{where} refused access: {exc.explanation}")
        return OperationFailed(f"{where} refused the request: {exc.explanation or exc}")
    text = str(exc)
    if isinstance(exc, paramiko.AuthenticationException):
        return AuthenticationFailed(f"{where} refused the SSH key of this worker ({text}).")
    if isinstance(exc, paramiko.SSHException) and "known_hosts" in text:
        return AuthenticationFailed(
            f"{where}: its SSH host key is not in this worker's ~/.ssh/known_hosts; add it "
            "(ssh-keyscan) after checking its fingerprint."
        )
    if isinstance(exc, NoValidConnectionsError):
        return Unreachable(f"{where} is not reachable: SSH connection refused.")
    if isinstance(exc, paramiko.SSHException | EOFError):
        return Unreachable(f"{where}: SSH failed ({_first_line(text)}).")
    if "FileNotFoundError" in text or "No such file" in text:
        return Unreachable(f"{where} is not reachable: its socket does not exist.")
    if "Connection refused" in text or "ConnectionRefused" in text:
        return Unreachable(f"{where} is not reachable: connection refused.")
    if "PermissionError" in text or "Permission denied" in text:
        return AuthenticationFailed(f"{where}: permission denied on its socket.")
    if isinstance(exc, requests.exceptions.SSLError) or "SSL" in text:
        return AuthenticationFailed(f"{where}: TLS handshake failed ({_first_line(text)}).")
    if isinstance(exc, requests.exceptions.ConnectionError | docker.errors.DockerException):
        return Unreachable(f"{where} is not reachable: {_first_line(text)}")
    return OperationFailed(f"{where}: {_first_line(text)}")


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:300] if text.strip() else "unknown error"


@contextmanager
def client(engine: DockerEngine) -> Iterator[docker.DockerClient]:
    """A DockerClient for the engine; TLS material lives in a private temp dir meanwhile."""
    with tempfile.TemporaryDirectory(prefix="opsportal-tls-") as tls_dir:
        tls = _tls_config(engine, tls_dir)
        try:
            docker_client = docker.DockerClient(
                base_url=engine.base_url,
                timeout=engine.timeout_seconds,
                tls=tls,
                # ssh:// goes through paramiko, which reads the worker's ~/.ssh (config,
                # keys, known_hosts) and refuses hosts whose key is not known.
                use_ssh_client=False,
                version=docker.constants.MINIMUM_DOCKER_API_VERSION,
            )
            # The engine is addressed directly: no proxy from the environment, and no
            # REQUESTS_CA_BUNDLE overriding the engine's own CA (requests lets the
            # environment win over the session's `verify`). Negotiate the API version after.
            docker_client.api.trust_env = False
            docker_client.api._version = docker_client.api._retrieve_server_version()
        except Exception as exc:
            raise translate_error(engine, exc) from exc
        try:
            yield docker_client
        except AdapterError:
            raise
        except Exception as exc:
            raise translate_error(engine, exc) from exc
        finally:
            docker_client.close()


def _tls_config(engine: DockerEngine, tls_dir: str) -> docker.tls.TLSConfig | bool:
    if not engine.base_url.startswith("tcp://") or not (
        engine.tls_ca_cert or engine.tls_client_cert
    ):
        return False

    def write(name: str, content: str) -> str | None:
        if not content:
            return None
        path = os.path.join(tls_dir, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(content)
        return path

    ca = write("ca.pem", engine.tls_ca_cert)
    cert = write("cert.pem", engine.tls_client_cert)
    key = write("key.pem", engine.tls_client_key)
    return docker.tls.TLSConfig(
        client_cert=(cert, key) if cert and key else None,
        ca_cert=ca,
        verify=ca if engine.tls_verify and ca else engine.tls_verify,
    )


def ping(engine: DockerEngine) -> PingResult:
    with client(engine) as docker_client:
        docker_client.ping()
        info = docker_client.info()
    return PingResult(
        summary=(
            f"Docker {info.get('ServerVersion', '?')} on {info.get('Name', '?')}: "
            f"{info.get('ContainersRunning', 0)} running, {info.get('ContainersStopped', 0)} "
            f"stopped containers"
        ),
        details={
            "server_version": info.get("ServerVersion"),
            "containers_running": info.get("ContainersRunning"),
            "containers_stopped": info.get("ContainersStopped"),
            "images": info.get("Images"),
            "memory_bytes": info.get("MemTotal"),
            "cpus": info.get("NCPU"),
            "docker_root_dir": info.get("DockerRootDir"),
            "engine_id": info.get("ID") or "",
        },
    )


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


# --- monitoring: container and host figures (appended for opsportal.monitoring) -------------


@dataclass(frozen=True)
class ContainerFigures:
    """What monitoring samples of one container; None where the engine had no figure."""

    name: str
    state: str
    health: str | None  # "healthy", "unhealthy", "starting", or None without a healthcheck
    restart_count: int
    oom_killed: bool
    cpu_usage_seconds: float | None
    memory_bytes: int | None
    memory_limit_bytes: int | None
    # When the engine created the container: RestartCount counts from then.
    created_at: dt.datetime | None = None
    # CPUs the container may use (--cpus, or a CFS quota); None when it has no CPU limit.
    cpu_limit_cores: float | None = None
    container_id: str = ""
    # Restarts since `restarts_since`, from the engine's own start events (None: not asked,
    # or the engine did not give its events). Unlike RestartCount, a manual restart does not
    # reset it, and a replaced container of the same name starts again from 0.
    restarts_recent: int | None = None


@dataclass(frozen=True)
class EngineFigures:
    containers: list[ContainerFigures]
    memory_total_bytes: int
    cpus: int
    data_root: str
    data_root_disk: tuple[int, int] | None  # (total, free) bytes, when the data root is local


def _container_figures(api: docker.APIClient, summary: dict) -> ContainerFigures:
    container_id = summary["Id"]
    attrs = api.inspect_container(container_id)
    state = attrs.get("State") or {}
    health = (state.get("Health") or {}).get("Status")
    cpu_seconds = memory = None
    if state.get("Running"):
        # one_shot: the engine answers at once instead of waiting a second to compute
        # precpu figures; monitoring computes CPU use from its own previous sample.
        try:
            stats = api.stats(container_id, stream=False, one_shot=True)
        except ValueError:
            # An empty answer ("Expecting value: line 1 column 1"), seen on the shared test
            # engine while containers died: this container has no CPU/memory figure this
            # round, and the engine's other containers are still collected.
            stats = {}
        total = ((stats.get("cpu_stats") or {}).get("cpu_usage") or {}).get("total_usage")
        cpu_seconds = total / 1e9 if total is not None else None
        memory_stats = stats.get("memory_stats") or {}
        usage = memory_stats.get("usage")
        if usage is not None:
            # What `docker stats` shows: usage minus reclaimable page cache.
            inner = memory_stats.get("stats") or {}
            cache = inner.get("inactive_file", inner.get("total_inactive_file", 0))
            memory = max(usage - cache, 0)
    configured_limit = (attrs.get("HostConfig") or {}).get("Memory") or None
    name = (attrs.get("Name") or container_id[:12]).lstrip("/")
    return ContainerFigures(
        name=name,
        state=state.get("Status", "unknown"),
        health=health,
        restart_count=int(attrs.get("RestartCount") or 0),
        oom_killed=bool(state.get("OOMKilled")),
        cpu_usage_seconds=cpu_seconds,
        memory_bytes=memory,
        # Without a configured limit the engine reports the host's memory as the limit,
        # which is not a limit the container can hit before the host does.
        memory_limit_bytes=configured_limit or None,
        created_at=_engine_time(attrs.get("Created")),
        cpu_limit_cores=_cpu_limit_cores(attrs.get("HostConfig") or {}),
        container_id=attrs.get("Id") or container_id,
    )


def _container_starts(api: docker.APIClient, *, since: dt.datetime, until: float) -> dict[str, int]:
    """How often the engine started each container (by ID) between `since` and `until`:
    restart-policy restarts, `docker restart` and `docker start` each log one start event.

    `until` is the current time with its fraction (the engine waits for an `until` in the
    future before it answers). The engine keeps only its last few hundred events (256 on
    Docker 20.10), so on a busy engine this is a lower bound."""
    starts: dict[str, int] = {}
    for event in _read_events(
        api,
        since=f"{since.timestamp():.9f}",
        until=f"{until:.9f}",
        filters={"type": "container", "event": ["start"]},
    ):
        container_id = (event.get("Actor") or {}).get("ID") or event.get("id") or ""
        starts[container_id] = starts.get(container_id, 0) + 1
    return starts


def _read_events(api: docker.APIClient, *, since, until, filters: dict | None = None) -> list[dict]:
    """The engine's events between `since` and `until` (one JSON object a line). The SDK's
    own decoding raises StreamParseError when the last newline arrives in a chunk of its
    own, so the lines are parsed here."""
    pieces = api.events(since=since, until=until, filters=filters, decode=False)
    raw = b"".join(p.encode() if isinstance(p, str) else p for p in pieces)
    return [json.loads(line) for line in raw.splitlines() if line.strip()]


def _restarts_since(figures: ContainerFigures, starts: dict[str, int], since: dt.datetime) -> int:
    count = starts.get(figures.container_id, 0)
    # A container created within the window was started once without being restarted.
    if figures.created_at is not None and figures.created_at >= since and count:
        count -= 1
    return count


def _cpu_limit_cores(host_config: dict) -> float | None:
    if host_config.get("NanoCpus"):
        return host_config["NanoCpus"] / 1e9
    quota, period = host_config.get("CpuQuota") or 0, host_config.get("CpuPeriod") or 100_000
    return quota / period if quota > 0 else None


def _engine_time(value: str | None) -> dt.datetime | None:
    """The engine's RFC 3339 timestamps carry nanoseconds, more than fromisoformat takes."""
    import datetime as dt
    import re

    if not value or value.startswith("0001-"):
        return None
    value = re.sub(r"(\.\d{6})\d+", r"\1", value).replace("Z", "+00:00")
    try:
        return dt.datetime.fromisoformat(value)
    except ValueError:
        return None


def engine_figures(
    engine: DockerEngine, *, max_workers: int = 64, restarts_since: dt.datetime | None = None
) -> EngineFigures:
    """Every container's state, health, restarts, OOM kills, CPU and memory, and the host's
    memory and data-root disk, in one pass (containers inspected concurrently); with
    `restarts_since`, also each container's restarts since then, from the engine's events.

    The engine answers a one-shot stats request at its next stats tick (about 1 s, measured
    on Docker 28), however many requests wait for it; so asking for all containers at once
    takes about one tick, where 8 at a time took 7 s for 57 containers."""
    from concurrent.futures import ThreadPoolExecutor

    with client(engine) as docker_client:
        api = docker_client.api
        info = api.info()
        starts = None
        if restarts_since is not None:
            # Read before the containers are inspected: a start in between then shows in
            # RestartCount, never in the events only.
            try:
                starts = _container_starts(api, since=restarts_since, until=time.time())
            except (docker.errors.APIError, requests.exceptions.RequestException):
                starts = None  # the collector falls back to RestartCount alone
        summaries = api.containers(all=True)
        with ThreadPoolExecutor(
            max_workers=max(1, min(max_workers, len(summaries))),
            thread_name_prefix="docker-figures",
        ) as pool:
            futures = [pool.submit(_container_figures, api, s) for s in summaries]
            containers = []
            for future in futures:
                try:
                    containers.append(future.result())
                except docker.errors.NotFound:
                    continue  # removed between the listing and the inspection
    if starts is not None:
        containers = [
            replace(c, restarts_recent=_restarts_since(c, starts, restarts_since))
            for c in containers
        ]
    data_root = info.get("DockerRootDir") or ""
    disk = None
    # The data root's free space is only visible from the same host (a local socket).
    if engine.base_url.startswith("unix://") and data_root and os.path.isdir(data_root):
        usage = shutil.disk_usage(data_root)
        disk = (usage.total, usage.free)
    return EngineFigures(
        containers=containers,
        memory_total_bytes=int(info.get("MemTotal") or 0),
        cpus=int(info.get("NCPU") or 1),
        data_root=data_root,
        data_root_disk=disk,
    )


# --- docker exec, streaming (the runbook's `docker exec … pg_dump`) ----------------------


def exec_stream(
    engine: DockerEngine,
    container_name: str,
    command: list[str],
    *,
    environment: dict[str, str] | None = None,
    stdout_sink,
    stream_timeout_seconds: float = 3600,
) -> tuple[int, str]:
    """Run `command` in the container and hand its stdout to `stdout_sink` chunk by chunk.

    Returns (exit code, stderr text). The environment is the exec'd process's own, so a
    password passed there never appears on a command line. The socket waits up to
    `stream_timeout_seconds` between chunks: a dump may be silent for a long while.
    """
    stderr = bytearray()
    with client(engine) as docker_client:
        try:
            docker_client.containers.get(container_name)
        except docker.errors.NotFound as exc:
            raise NotFound(
                f"Container {container_name!r} does not exist on Docker engine {engine.name}."
            ) from exc
        api = docker_client.api
        exec_id = api.exec_create(
            container_name, command, stdout=True, stderr=True, environment=environment or {}
        )["Id"]
        api.timeout = stream_timeout_seconds
        try:
            for out, err in api.exec_start(exec_id, stream=True, demux=True):
                if out:
                    stdout_sink(out)
                if err and len(stderr) < 65536:
                    stderr.extend(err)
        finally:
            api.timeout = engine.timeout_seconds
        exit_code = api.exec_inspect(exec_id).get("ExitCode")
    return (exit_code if exit_code is not None else -1), stderr.decode("utf-8", "replace").strip()


# --- operations: containers, Compose/Swarm scaling, engine events, isolation, evidence -----
# (appended for opsportal.operations; the runbook's "Container Issues" and security steps)


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
    engine: DockerEngine, name: str, *, lines: int | None = 200, since_minutes: int | None = None
) -> str:
    """The container's last `lines` log lines (stdout and stderr), optionally only recent."""
    import datetime as dt

    kwargs: dict = {"stdout": True, "stderr": True, "timestamps": True}
    kwargs["tail"] = lines if lines else "all"
    if since_minutes:
        kwargs["since"] = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=since_minutes)
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


_COMPOSE_PROJECT = "com.docker.compose.project"
_COMPOSE_SERVICE = "com.docker.compose.service"
_COMPOSE_NUMBER = "com.docker.compose.container-number"


def compose_service_scale(engine: DockerEngine, name: str, *, replicas: int) -> dict:
    """Scale the Compose service that container `name` belongs to, as `docker compose up
    --scale service=N` would: new replicas copy an existing replica's configuration and are
    named and labelled <project>-<service>-<number>; scaling down removes the highest
    numbers first."""
    with client(engine) as docker_client:
        reference = _get_container(docker_client, engine, name)
        labels = reference.labels or {}
        project, service = labels.get(_COMPOSE_PROJECT), labels.get(_COMPOSE_SERVICE)
        if not project or not service:
            raise OperationFailed(
                f"Container {name!r} on {engine.name} has no Compose labels "
                f"({_COMPOSE_PROJECT}, {_COMPOSE_SERVICE}); it is not part of a Compose "
                "service that could be scaled."
            )
        replicas_now = docker_client.containers.list(
            all=True,
            filters={"label": [f"{_COMPOSE_PROJECT}={project}", f"{_COMPOSE_SERVICE}={service}"]},
        )
        replicas_now = [
            c for c in replicas_now if (c.labels or {}).get("com.docker.compose.oneoff") != "True"
        ]
        replicas_now.sort(key=lambda c: int((c.labels or {}).get(_COMPOSE_NUMBER) or 0))
        before = len(replicas_now)
        created, removed = [], []
        if replicas > before:
            template = reference.attrs
            numbers = {int((c.labels or {}).get(_COMPOSE_NUMBER) or 0) for c in replicas_now}
            number = 0
            for _ in range(replicas - before):
                number += 1
                while number in numbers:
                    number += 1
                numbers.add(number)
                created.append(
                    _compose_replica(docker_client, template, project, service, number).name
                )
        elif replicas < before:
            for container in reversed(replicas_now[replicas:]):
                container.stop(timeout=10)
                container.remove()
                removed.append(container.name)
    return {
        "project": project,
        "service": service,
        "replicas_before": before,
        "replicas_after": before + len(created) - len(removed),
        "created": created,
        "removed": removed,
    }


def _compose_replica(
    docker_client: docker.DockerClient, template: dict, project: str, service: str, number: int
):
    config = template.get("Config") or {}
    host_config = template.get("HostConfig") or {}
    labels = dict(config.get("Labels") or {})
    labels[_COMPOSE_NUMBER] = str(number)
    restart = host_config.get("RestartPolicy") or {}
    kwargs = {
        "image": config.get("Image"),
        "command": config.get("Cmd"),
        "entrypoint": config.get("Entrypoint"),
        "environment": config.get("Env"),
        "labels": labels,
        "working_dir": config.get("WorkingDir") or None,
        "user": config.get("User") or None,
        "name": f"{project}-{service}-{number}",
        "network_mode": host_config.get("NetworkMode") or None,
        "volumes": host_config.get("Binds") or None,
        "mem_limit": host_config.get("Memory") or None,
        "nano_cpus": host_config.get("NanoCpus") or None,
        "restart_policy": {"Name": restart["Name"]} if restart.get("Name") else None,
        "detach": True,
    }
    return docker_client.containers.run(**{k: v for k, v in kwargs.items() if v is not None})


def swarm_service_scale(engine: DockerEngine, service_name: str, *, replicas: int) -> dict:
    with client(engine) as docker_client:
        try:
            service = docker_client.services.get(service_name)
        except docker.errors.NotFound as exc:
            raise NotFound(
                f"Swarm service {service_name!r} does not exist on Docker engine {engine.name}."
            ) from exc
        except docker.errors.APIError as exc:
            if "not a swarm manager" in str(exc).lower() or exc.status_code == 503:
                raise OperationFailed(
                    f"Docker engine {engine.name} is not a Swarm manager, so it has no Swarm "
                    f"service {service_name!r} to scale."
                ) from exc
            raise
        before = (service.attrs.get("Spec", {}).get("Mode", {}).get("Replicated") or {}).get(
            "Replicas"
        )
        if not service.scale(replicas):
            raise OperationFailed(f"Docker engine {engine.name} refused to scale {service_name}.")
    return {"service": service_name, "replicas_before": before, "replicas_after": replicas}


def engine_info_and_events(engine: DockerEngine, *, since_minutes: int = 60) -> dict:
    """The engine's own facts and its recent events (die, oom, kill, restart, health…): what
    the runbook's "Review Docker daemon logs" looks for, read through the engine's API."""
    import time

    until = int(time.time()) + 1  # include events of the current second
    with client(engine) as docker_client:
        info = docker_client.info()
        events = _read_events(docker_client.api, since=until - since_minutes * 60, until=until)
    return {
        "server_version": info.get("ServerVersion"),
        "containers_running": info.get("ContainersRunning"),
        "containers_stopped": info.get("ContainersStopped"),
        "containers_paused": info.get("ContainersPaused"),
        "memory_bytes": info.get("MemTotal"),
        "cpus": info.get("NCPU"),
        "storage_driver": info.get("Driver"),
        "warnings": info.get("Warnings") or [],
        "events": [
            {
                "time": event.get("time"),
                "type": event.get("Type"),
                "action": event.get("Action"),
                "actor": ((event.get("Actor") or {}).get("Attributes") or {}).get("name")
                or (event.get("Actor") or {}).get("ID", "")[:12],
            }
            for event in events
        ],
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


def container_diff(engine: DockerEngine, name: str) -> list[dict]:
    """Filesystem changes since the container was created (`docker diff`)."""
    kinds = {0: "changed", 1: "added", 2: "deleted"}
    with client(engine) as docker_client:
        changes = _get_container(docker_client, engine, name).diff() or []
    return [
        {"kind": kinds.get(c.get("Kind"), c.get("Kind")), "path": c.get("Path")} for c in changes
    ]


def container_export(engine: DockerEngine, name: str, *, into: BinaryIO) -> tuple[int, str]:
    """Stream the container's filesystem as a tar into `into`; returns (size, sha256).

    The caller creates the file, so it decides its permissions from the first byte."""
    import hashlib

    digest, size = hashlib.sha256(), 0
    with client(engine) as docker_client:
        container = _get_container(docker_client, engine, name)
        for chunk in container.export(chunk_size=1024 * 1024):
            into.write(chunk)
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()
