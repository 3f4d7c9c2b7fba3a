"""The checks behind /health/detailed (the runbook's "Detailed system status").

Each check returns a CheckOutcome and never raises. Checks that wait on the network run
concurrently in a shared thread pool, each bounded by HEALTH_CHECK_TIMEOUT, so one dead
system cannot make the endpoint hang.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass

import psutil
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.utils import timezone

from opsportal.celery import app as celery_app
from opsportal.health.models import Heartbeat
from opsportal.systems.models import SPECIFIC_RELATIONS, System
from opsportal.systems.services import system_ping

OK, FAILING, TIMEOUT = "ok", "failing", "timeout"

_pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="health-check")


@dataclass
class CheckOutcome:
    name: str
    status: str
    message: str
    duration_ms: float
    critical: bool

    def as_dict(self) -> dict:
        return {**asdict(self), "duration_ms": round(self.duration_ms, 1)}


class CheckFailed(Exception):
    pass


def _timed(name: str, critical: bool, check: Callable[[], str]) -> CheckOutcome:
    started = time.perf_counter()
    try:
        message, status = check(), OK
    except Exception as exc:
        message, status = str(exc) or type(exc).__name__, FAILING
    return CheckOutcome(name, status, message, (time.perf_counter() - started) * 1000, critical)


def check_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return f"{connection.vendor} answers"


def check_cache() -> str:
    key = "opsportal:health:probe"
    cache.set(key, "1", timeout=30)
    if cache.get(key) != "1":
        raise CheckFailed("The cache did not return the value just written.")
    return "read-after-write ok"


def check_broker() -> str:
    with celery_app.connection_for_write(url=settings.CELERY_BROKER_URL) as conn:
        conn.ensure_connection(max_retries=1, timeout=settings.HEALTH_CHECK_TIMEOUT)
        return f"{conn.transport_cls} broker reachable"


def check_workers() -> str:
    replies = celery_app.control.ping(timeout=settings.HEALTH_CHECK_TIMEOUT * 0.75, limit=1)
    if not replies:
        raise CheckFailed("No Celery worker answered a ping.")
    return "answering: " + ", ".join(sorted(name for reply in replies for name in reply))


def check_beat() -> str:
    heartbeat = Heartbeat.objects.filter(name="beat").first()
    if heartbeat is None:
        raise CheckFailed("Celery beat has not recorded a heartbeat yet.")
    age = (timezone.now() - heartbeat.at).total_seconds()
    if age > settings.HEALTH_BEAT_MAX_AGE_SECONDS:
        # The heartbeat is a task beat sends and a worker runs: say so rather than blame
        # beat alone when the worker is the one that died.
        raise CheckFailed(
            f"Celery beat's last heartbeat is {age:.0f} s old: beat, the broker or every "
            "worker is down (see the workers check)."
        )
    return f"last heartbeat {age:.0f} s ago"


def check_disk() -> str:
    root = settings.BACKUP_ROOT
    root.mkdir(parents=True, exist_ok=True)
    usage = shutil.disk_usage(root)
    free_percent = usage.free / usage.total * 100
    text = f"{usage.free / 2**30:.1f} GiB free ({free_percent:.0f}%) at {root}"
    if free_percent < settings.HEALTH_DISK_MIN_FREE_PERCENT:
        raise CheckFailed("Low disk space: " + text)
    return text


def check_memory() -> str:
    memory = psutil.virtual_memory()
    text = f"{memory.percent:.0f}% of {memory.total / 2**30:.1f} GiB used"
    if memory.percent > settings.HEALTH_MEMORY_MAX_USED_PERCENT:
        raise CheckFailed("High memory use: " + text)
    return text


def _system_check(system: System) -> Callable[[], str]:
    def check() -> str:
        result = system_ping(system=system)
        if not result.ok:
            raise CheckFailed(result.message)
        return result.message

    return check


# Checks that touch only the portal's own database run in the request's thread.
_LOCAL_CHECKS: dict[str, Callable[[], str]] = {
    "database": check_database,
    "beat": check_beat,
}
_REMOTE_CHECKS: dict[str, Callable[[], str]] = {
    "cache": check_cache,
    "broker": check_broker,
    "workers": check_workers,
    "disk": check_disk,
    "memory": check_memory,
}


def register_check(
    name: str, check: Callable[[], list[tuple[str, bool, Callable[[], str]]]]
) -> None:
    """Let an app add checks: `check()` returns (name, critical, function) triples, so one
    registration can add a check per row (e.g. each database's backup age)."""
    _EXTRA_CHECKS[name] = check


_EXTRA_CHECKS: dict[str, Callable[[], list[tuple[str, bool, Callable[[], str]]]]] = {}


def run_checks(*, timeout: float | None = None) -> list[CheckOutcome]:
    timeout = timeout if timeout is not None else settings.HEALTH_CHECK_TIMEOUT
    critical = set(settings.HEALTH_CRITICAL_CHECKS)
    systems = [s.specific() for s in System.objects.select_related(*SPECIFIC_RELATIONS)]
    remote: dict[str, tuple[bool, Callable[[], str]]] = {
        name: (name in critical, check) for name, check in _REMOTE_CHECKS.items()
    }
    for system in systems:
        remote[f"{system.kind}:{system.name}"] = (
            system.critical and "systems" in critical,
            _system_check(system),
        )
    for provider in _EXTRA_CHECKS.values():
        for name, is_critical, check in provider():
            remote[name] = (is_critical, check)
    futures = {
        _pool.submit(_timed, name, is_critical, check): (name, is_critical)
        for name, (is_critical, check) in remote.items()
    }
    outcomes = [_timed(name, name in critical, check) for name, check in _LOCAL_CHECKS.items()]
    done, _ = wait(futures, timeout=timeout)
    for future, (name, is_critical) in futures.items():
        if future in done:
            outcomes.append(future.result())
        else:
            outcomes.append(
                CheckOutcome(
                    name, TIMEOUT, f"No answer within {timeout:g} s.", timeout * 1000, is_critical
                )
            )
    order = {name: i for i, name in enumerate([*_LOCAL_CHECKS, *remote])}
    outcomes.sort(key=lambda o: order[o.name])
    return outcomes


def overall_ok(outcomes: list[CheckOutcome]) -> bool:
    return all(o.status == OK for o in outcomes if o.critical)
