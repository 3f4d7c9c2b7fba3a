"""Connection checks of registered systems."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from django.utils import timezone

from opsportal.audit.models import AuditAction, AuditOutcome
from opsportal.audit.services import audit_record
from opsportal.systems.adapters import docker_engine, http_endpoint, postgres, redis_cache
from opsportal.systems.adapters.errors import AdapterError
from opsportal.systems.adapters.results import PingResult
from opsportal.systems.models import SPECIFIC_RELATIONS, System, SystemKind
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
    check = system_ping(system=system)
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
    _store(system, check)
    if previous is not None and previous != check.ok:
        audit_record(
            action=AuditAction.OPERATION,
            obj=system,
            outcome=AuditOutcome.SUCCESS if check.ok else AuditOutcome.FAILURE,
            message=("Recovered: " if check.ok else "Check failing: ") + check.message,
        )


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
