"""Adapter for Docker engines (the Docker SDK), with timeouts and operator-readable errors."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import docker
import docker.errors
import docker.tls
import requests

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
                use_ssh_client=engine.base_url.startswith("ssh://"),
                version="auto",
            )
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
        stats = api.stats(container_id, stream=False, one_shot=True)
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
    )


def engine_figures(engine: DockerEngine, *, max_workers: int = 8) -> EngineFigures:
    """Every container's state, health, restarts, OOM kills, CPU and memory, and the host's
    memory and data-root disk, in one pass (containers inspected concurrently)."""
    from concurrent.futures import ThreadPoolExecutor

    with client(engine) as docker_client:
        api = docker_client.api
        info = api.info()
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

