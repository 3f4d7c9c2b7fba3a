"""Getting things out of a container: a command's output streamed as it comes (`docker exec`,
the runbook's `docker exec … pg_dump`), and the evidence a security incident preserves (its
filesystem changes and its whole filesystem as a tar stream).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, BinaryIO

import docker.errors

from opsportal.systems.adapters.docker_engine.connection import client
from opsportal.systems.adapters.docker_engine.containers import _get_container
from opsportal.systems.adapters.errors import NotFound

if TYPE_CHECKING:
    from opsportal.systems.models import DockerEngine


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
