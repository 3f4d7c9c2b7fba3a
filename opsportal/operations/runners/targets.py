"""Which system an operation acts on: the container or engine behind a target, and whether
a target can take a kind of operation at all."""

from __future__ import annotations

from opsportal.operations.kinds import KINDS, TargetType
from opsportal.systems.models import DockerEngine, HttpEndpoint, PostgresDatabase, RedisCache


class InvalidTarget(ValueError):
    """The chosen system cannot be the target of this kind of operation."""


def resolve_container(target, params: dict) -> tuple[DockerEngine, str]:
    target = target.specific()
    if isinstance(target, DockerEngine):
        if not params.get("container"):
            raise InvalidTarget(
                f"{target.name} is a Docker engine: name the container to act on (container)."
            )
        return target, params["container"]
    if not target.runs_in_container:
        raise InvalidTarget(
            f"{target.name} does not run in a container the portal knows: set its Docker "
            "engine and container name on the system's page."
        )
    return target.docker_engine, target.container_name


def resolve_engine(target) -> DockerEngine:
    target = target.specific()
    if isinstance(target, DockerEngine):
        return target
    if target.docker_engine_id:
        return target.docker_engine
    raise InvalidTarget(f"{target.name} is not a Docker engine and runs on none.")


_TYPES = {
    TargetType.POSTGRES: (PostgresDatabase, "a PostgreSQL database"),
    TargetType.REDIS: (RedisCache, "a Redis cache"),
    TargetType.HTTP: (HttpEndpoint, "an HTTP endpoint"),
}


def check_target(kind: str, target, params: dict) -> None:
    """Raise InvalidTarget when `target` cannot take this kind of operation."""
    spec = KINDS[kind]
    if kind == "service_scale" and params.get("swarm_service"):
        resolve_engine(target)  # a Swarm service is named on its engine, not by a container
    elif spec.target == TargetType.CONTAINER:
        resolve_container(target, params)
    elif spec.target == TargetType.ENGINE:
        resolve_engine(target)
    else:
        model, words = _TYPES[spec.target]
        if not isinstance(target.specific(), model):
            raise InvalidTarget(f"{spec.label} needs {words}; {target.name} is not one.")
        if kind == "db_container_logs" and not target.runs_in_container:
            raise InvalidTarget(
                f"{target.name} does not run in a container the portal knows, so its logs "
                "cannot be read here: set its Docker engine and container name."
            )
