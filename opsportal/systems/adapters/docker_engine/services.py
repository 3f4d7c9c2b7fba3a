"""Scaling a service: a Compose service on a plain engine (replicas copied from one of its
containers, as `docker compose up --scale` would) or a Swarm service on a manager.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import docker
import docker.errors

from opsportal.systems.adapters.docker_engine.connection import client
from opsportal.systems.adapters.docker_engine.containers import _container_row, _get_container
from opsportal.systems.adapters.errors import NotFound, OperationFailed

if TYPE_CHECKING:
    from opsportal.systems.models import DockerEngine


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


def containers_touched(
    engine: DockerEngine, name: str, *, whole_service: bool = False
) -> list[dict]:
    """Container `name` as it is now (name, id, state, health, image…), or with
    `whole_service` every replica of the Compose service it belongs to (itself alone when
    it belongs to none): what a restart, stop or scale would touch."""
    with client(engine) as docker_client:
        reference = _get_container(docker_client, engine, name)
        labels = reference.labels or {}
        project, service = labels.get(_COMPOSE_PROJECT), labels.get(_COMPOSE_SERVICE)
        if not (whole_service and project and service):
            return [_container_row(reference.attrs)]
        replicas = docker_client.containers.list(
            all=True,
            filters={"label": [f"{_COMPOSE_PROJECT}={project}", f"{_COMPOSE_SERVICE}={service}"]},
        )
        replicas = [
            c for c in replicas if (c.labels or {}).get("com.docker.compose.oneoff") != "True"
        ]
        replicas.sort(key=lambda c: int((c.labels or {}).get(_COMPOSE_NUMBER) or 0))
        return [_container_row(c.attrs) for c in replicas]


def swarm_service_replicas(engine: DockerEngine, service_name: str) -> dict:
    """A Swarm service's name and the replica count its spec asks for now."""
    with client(engine) as docker_client:
        try:
            service = docker_client.services.get(service_name)
        except docker.errors.NotFound as exc:
            raise NotFound(
                f"Swarm service {service_name!r} does not exist on Docker engine {engine.name}."
            ) from exc
        except docker.errors.APIError as exc:
            raise OperationFailed(
                f"Docker engine {engine.name} could not show Swarm service {service_name!r}: "
                f"{str(exc)[:200]}"
            ) from exc
        replicas = (service.attrs.get("Spec", {}).get("Mode", {}).get("Replicated") or {}).get(
            "Replicas"
        )
    return {"service": service_name, "replicas": replicas}
