"""Adapter for Docker engines (the Docker SDK), with timeouts and operator-readable errors."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
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
