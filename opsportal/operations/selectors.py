"""Read queries over operations that more than one caller needs."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Q, QuerySet

from opsportal.operations.kinds import KINDS, TargetType
from opsportal.operations.models import Operation, OperationStatus
from opsportal.systems.adapters.postgres import APPLICATION_NAME
from opsportal.systems.models import System, SystemKind


def connection_owners_seen(*, target_id: int | None) -> dict[str, list[str]]:
    """The applications and users holding connections in the target's newest successful
    connection summary (the runbook's "Check connection pool status"), most connections
    first: what "Restart database connections" is likely to be aimed at. The portal's own
    and sessions without a name are left out."""
    if target_id is None:
        return {}
    newest = (
        Operation.objects.filter(
            target_id=target_id, kind="db_connections", status=OperationStatus.SUCCEEDED
        )
        .order_by("-requested_at")
        .values_list("result", flat=True)
        .first()
    )
    if not newest:
        return {}

    def names(key: str) -> list[str]:
        return [
            name for name, _count in newest.get(key, []) if name not in ("(none)", APPLICATION_NAME)
        ]

    return {"application_name": names("by_application"), "user": names("by_user")}


def systems_for_kind(systems: QuerySet[System], *, kind: str) -> QuerySet[System]:
    """Of `systems`, those an operation of `kind` can act on (its TargetType): the run page
    lists only these, so nobody picks an HTTP endpoint for a database operation."""
    target = KINDS[kind].target
    if target == TargetType.CONTAINER:
        # an engine (the container named in the parameters) or a system in a container
        return systems.filter(Q(kind=SystemKind.DOCKER) | ~Q(container_name=""))
    if target == TargetType.ENGINE:
        return systems.filter(Q(kind=SystemKind.DOCKER) | Q(docker_engine__isnull=False))
    return systems.filter(kind=_KIND_OF_TARGET[target])


_KIND_OF_TARGET = {
    TargetType.POSTGRES: SystemKind.POSTGRES,
    TargetType.REDIS: SystemKind.REDIS,
    TargetType.HTTP: SystemKind.HTTP,
}


@dataclass(frozen=True)
class AlertedTarget:
    """Where an alert points an operation: the system to choose and, for an operation on a
    container of a Docker engine, the container's name."""

    system: System | None
    container: str = ""


def operation_target_for_alert(*, kind: str, system: System | None, subject: str) -> AlertedTarget:
    """The system (and container) an operation of `kind` should act on, for an alert on
    `system` about `subject` (a container's name when the system is a Docker engine): what
    the run page preselects, so the operator types no names."""
    if system is None:
        return AlertedTarget(None)
    target = KINDS[kind].target
    in_container = subject if system.kind == SystemKind.DOCKER else ""
    if target == TargetType.CONTAINER:
        if system.kind == SystemKind.DOCKER:
            return AlertedTarget(system, in_container)
        return AlertedTarget(system if system.container_name else None)
    if target == TargetType.ENGINE:
        if system.kind == SystemKind.DOCKER:
            return AlertedTarget(system)
        return AlertedTarget(system if system.docker_engine_id else None)
    wanted = _KIND_OF_TARGET[target]
    if system.kind == wanted:
        return AlertedTarget(system)
    if in_container:
        # The alert is about a container; the database (cache, API) that runs in it is the
        # operation's target.
        return AlertedTarget(
            System.objects.filter(
                docker_engine_id=system.pk, container_name=in_container, kind=wanted
            ).first()
        )
    return AlertedTarget(None)
