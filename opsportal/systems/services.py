"""Connection checks of registered systems."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from django.db import transaction
from django.utils import timezone

from opsportal.audit.models import AuditAction, AuditOutcome
from opsportal.audit.services import audit_record
from opsportal.systems.adapters import docker_engine, http_endpoint, postgres, redis_cache
from opsportal.systems.adapters.errors import AdapterError
from opsportal.systems.adapters.results import PingResult
from opsportal.systems.models import SPECIFIC_RELATIONS, DockerEngine, System, SystemKind
from opsportal.systems.signals import system_registered

_PING: dict[str, Callable[[System], PingResult]] = {
    SystemKind.DOCKER: docker_engine.ping,
    SystemKind.POSTGRES: postgres.ping,
    SystemKind.REDIS: redis_cache.ping,
    SystemKind.HTTP: http_endpoint.ping,
}


@dataclass(frozen=True)
class ConnectionCheck:
    ok: bool
    message: str
    duration_ms: float
    details: dict = field(default_factory=dict)


def system_save(*, system: System, actor: object | None = None) -> System:
    """Register a system or save a change to it.

    Its change history is audited field by field (secrets masked). Re-pointing it (a
    connection field changed, see System.connection_fields) drops the stored secrets
    that were not entered again in the same save: the model enforces that for every
    save; this also audits why, and `system.secrets_dropped` says which were dropped.
    """
    with transaction.atomic():
        system.save()
        for name, dropped in getattr(system, "dependents_secrets_dropped", {}).items():
            audit_record(
                action=AuditAction.CHANGE,
                object_type=system._meta.label_lower,
                object_id=str(system.pk),
                object_repr=str(system),
                actor=actor,
                changes={"dependent": name, "secrets_dropped": list(dropped)},
                message=(
                    f"Stored {', '.join(dropped)} of {name} dropped: it runs on {system}, "
                    "whose connection changed"
                ),
            )
        if system.secrets_dropped:
            audit_record(
                action=AuditAction.CHANGE,
                obj=system,
                actor=actor,
                changes={
                    "secrets_dropped": list(system.secrets_dropped),
                    "because_changed": list(system.repointed_fields),
                },
                message=(
                    f"Stored {', '.join(system.secrets_dropped)} dropped: "
                    f"{', '.join(system.repointed_fields)} changed and "
                    "the secret was not entered again"
                ),
            )
    return system


def system_registration_announce(*, system: System) -> None:
    """Tell the apps that plug into the systems layer that `system` was just registered."""
    system_registered.send(sender=type(system), system=system)


def system_saved(sender, instance: System, created: bool, raw: bool = False, **kwargs) -> None:
    """post_save of every system kind: a new row is a registration, however it was made
    (the admin saves the model itself, a configuration import too). A fixture load
    (raw) is not."""
    if created and not raw:
        system_registration_announce(system=instance)


def system_ping(*, system: System) -> ConnectionCheck:
    """Ask the system whether it answers; never raises for the system's own failures."""
    system = system.specific()
    started = time.perf_counter()
    try:
        result = _PING[system.kind](system)
    except AdapterError as exc:
        return ConnectionCheck(False, exc.message, (time.perf_counter() - started) * 1000)
    return ConnectionCheck(
        True, result.summary, (time.perf_counter() - started) * 1000, result.details
    )


def system_test_connection(*, system: System, actor: object | None = None) -> ConnectionCheck:
    """The admin's "Test connection": check now, store the result, audit it."""
    check = _identify(system, system_ping(system=system))
    _store(system, check)
    audit_record(
        action=AuditAction.OPERATION,
        obj=system,
        actor=actor,
        outcome=AuditOutcome.SUCCESS if check.ok else AuditOutcome.FAILURE,
        message=f"Test connection: {check.message}",
    )
    return check


def _record_periodic(system: System, check: ConnectionCheck) -> None:
    """Scheduled checks are stored; only a change of state is audited."""
    previous = system.last_check_ok
    check = _identify(system, check)
    _store(system, check)
    if previous is not None and previous != check.ok:
        audit_record(
            action=AuditAction.OPERATION,
            obj=system,
            outcome=AuditOutcome.SUCCESS if check.ok else AuditOutcome.FAILURE,
            message=("Recovered: " if check.ok else "Check failing: ") + check.message,
        )


def _identify(system: System, check: ConnectionCheck) -> ConnectionCheck:
    """Record a Docker engine's daemon ID and say in its check when another registration
    reaches the same daemon (its socket and its ssh:// or tcp:// address, say)."""
    engine_id = check.details.get("engine_id") if check.ok else None
    if system.kind != SystemKind.DOCKER or not engine_id:
        return check
    engine = system.specific()
    if engine.engine_id != engine_id:
        DockerEngine.objects.filter(pk=engine.pk).update(engine_id=engine_id)
        engine.engine_id = engine_id
    note = docker_engine_duplicate_note(engine=engine)
    return replace(check, message=f"{check.message} {note}") if note else check


def docker_engine_duplicate_note(*, engine: DockerEngine) -> str:
    """What an operator must know when one daemon is registered more than once."""
    first = engine.first_registration
    if first is not None:
        return (
            f"Registered twice: this is the same Docker engine (ID {engine.engine_id}) as "
            f"{first.name!r}; its containers are monitored through {first.name!r} only, so "
            "they raise no duplicate incidents. Delete one of the two registrations."
        )
    later = list(
        DockerEngine.objects.filter(engine_id=engine.engine_id, pk__gt=engine.pk)
        .exclude(engine_id="")
        .values_list("name", flat=True)
    )
    if later:
        return (
            f"Also registered as {', '.join(repr(n) for n in later)} (same engine ID "
            f"{engine.engine_id}); its containers are monitored through this registration."
        )
    return ""


def docker_engines_duplicates(*, engines: list[DockerEngine]) -> set[int]:
    """The engines among `engines` that are a second registration of a daemon registered
    earlier: monitoring collects their containers only once, through the first. An engine
    never checked yet is identified now (one `docker info`), so a second registration
    raises no duplicate incident before its first scheduled check (after that, the
    scheduled checks keep the IDs current; an engine that does not answer is not asked
    again every round)."""
    for engine in engines:
        if not engine.engine_id and engine.last_checked_at is None:
            _record_periodic(engine, system_ping(system=engine))
    ids = {e.engine_id for e in engines if e.engine_id}
    if not ids:
        return set()
    first: dict[str, int] = {}
    for pk, engine_id in (
        DockerEngine.objects.filter(engine_id__in=ids).order_by("pk").values_list("pk", "engine_id")
    ):
        first.setdefault(engine_id, pk)
    return {e.pk for e in engines if e.engine_id and first.get(e.engine_id) != e.pk}


def systems_due_for_check(*, now: dt.datetime | None = None) -> list[System]:
    now = now or timezone.now()
    return [
        system.specific()
        for system in System.objects.select_related(*SPECIFIC_RELATIONS)
        if system.last_checked_at is None
        or (now - system.last_checked_at).total_seconds() >= system.check_interval_seconds - 1
    ]


def systems_check_due() -> int:
    """Check every system whose interval has elapsed, several at a time."""
    due = systems_due_for_check()
    with ThreadPoolExecutor(max_workers=8, thread_name_prefix="system-check") as pool:
        checks = list(pool.map(lambda system: system_ping(system=system), due))
    for system, check in zip(due, checks, strict=True):
        _record_periodic(system, check)
    return len(due)


def _store(system: System, check: ConnectionCheck) -> None:
    System.objects.filter(pk=system.pk).update(
        last_checked_at=timezone.now(),
        last_check_ok=check.ok,
        last_check_message=check.message[:500],
        last_check_duration_ms=round(check.duration_ms, 1),
    )
    system.last_check_ok = check.ok
    system.last_check_message = check.message[:500]
