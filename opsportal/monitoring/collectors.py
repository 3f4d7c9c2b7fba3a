"""Reading the key metrics from one system, through the shared adapters.

These functions run in worker threads and never touch the portal database: what they need
from earlier samples (counters for rates) is handed to them in `previous`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache

from opsportal.systems.adapters import docker_engine, http_endpoint, pg_activity, redis_cache
from opsportal.systems.adapters.errors import AdapterError
from opsportal.systems.models import System, SystemKind

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reading:
    metric: str
    value: float
    subject: str = ""
    # For a counter: the value it had at the start of its window, when the system itself
    # says so (not stored; the rolling figures derived from the counter use it).
    baseline: float | None = None
    # For a counter: how often it counted within its window by the system's own record
    # (the engine's events), which a reset of the counter does not erase.
    window_count: float | None = None


# container_restarts_5m counts the restarts within this window (from the engine's events,
# and from RestartCount samples where the engine's event buffer no longer reaches back).
RESTARTS_WINDOW = dt.timedelta(minutes=5)


# (metric, subject) -> (value, at) of the series' newest stored sample
Previous = dict[tuple[str, str], tuple[float, dt.datetime]]


def _percent(part: float, whole: float) -> float:
    return round(part / whole * 100, 3) if whole else 0.0


def collect_http(endpoint, previous: Previous, now: dt.datetime) -> list[Reading]:
    """One probe. A timeout or a refused connection is an API error, not a collection
    failure: the runbook counts it in the error rate."""
    try:
        response = http_endpoint.request(endpoint)
    except AdapterError:
        return [Reading("http_error", 1.0)]
    failed = not 200 <= response.status < 300
    return [
        Reading("http_latency_ms", round(response.latency_ms, 2)),
        Reading("http_error", 1.0 if failed else 0.0),
    ]


def collect_postgres(database, previous: Previous, now: dt.datetime) -> list[Reading]:
    figures = pg_activity.connection_figures(
        database, long_running_seconds=settings.MONITORING_LONG_QUERY_SECONDS
    )
    return [
        Reading("pg_connections_active", figures.active),
        Reading("pg_connections_idle", figures.idle),
        Reading("pg_connections_idle_in_transaction", figures.idle_in_transaction),
        Reading("pg_connections_waiting", figures.waiting),
        Reading("pg_connections_max", figures.max_connections),
        # The collector's own connection counts too: it is one of the slots in use.
        Reading(
            "pg_connections_used_percent", _percent(figures.total + 1, figures.max_connections)
        ),
        Reading("pg_long_running_queries", figures.long_running_queries),
        # Against what the registered user can get; the collector's own connection is not
        # counted (it is gone a moment later, and with the operator credential it may sit
        # in a reserved slot the application could not have had anyway).
        Reading("pg_connections_usable_max", figures.ceiling.usable),
        Reading("pg_connections_available_to_user", figures.ceiling.available),
        Reading("pg_connections_usable_percent", figures.ceiling.used_percent),
    ]


def collect_redis(cache, previous: Previous, now: dt.datetime) -> list[Reading]:
    figures = redis_cache.cache_figures(cache)
    hits, misses = figures.keyspace_hits, figures.keyspace_misses
    prev_hits = previous.get(("redis_keyspace_hits", ""))
    prev_misses = previous.get(("redis_keyspace_misses", ""))
    if prev_hits and prev_misses and hits >= prev_hits[0] and misses >= prev_misses[0]:
        # Hit rate since the previous sample: a lifetime ratio would hide a cache gone cold.
        delta_hits, delta_misses = hits - prev_hits[0], misses - prev_misses[0]
        if delta_hits + delta_misses:
            hits, misses = delta_hits, delta_misses
    readings = [
        Reading("redis_keyspace_hits", figures.keyspace_hits),
        Reading("redis_keyspace_misses", figures.keyspace_misses),
        Reading("redis_memory_used_bytes", figures.used_memory_bytes),
        Reading("redis_memory_max_bytes", figures.maxmemory_bytes),
        Reading("redis_evicted_keys", figures.evicted_keys),
        Reading("redis_connected_clients", figures.connected_clients),
    ]
    if hits + misses:
        readings.append(Reading("redis_hit_rate_percent", _percent(hits, hits + misses)))
    if figures.maxmemory_bytes:
        readings.append(
            Reading(
                "redis_memory_used_percent",
                _percent(figures.used_memory_bytes, figures.maxmemory_bytes),
            )
        )
    return readings


# The shape of what engine_figures keeps: a new shape gets a new key, so a worker of the new
# version never reads an entry of the old one.
INSPECTIONS_VERSION = 1


def _inspections_key(engine) -> str:
    where = hashlib.blake2b(engine.base_url.encode(), digest_size=8).hexdigest()
    return f"monitoring:docker-inspections:v{INSPECTIONS_VERSION}:{engine.pk}:{where}"


def collect_docker(engine, previous: Previous, now: dt.datetime) -> list[Reading]:
    # The containers' inspections of the last pass, kept in the cache so that the worker
    # collecting this engine next repeats only those no longer true (the adapter's
    # INSPECTION_EVENTS). Shared by every worker with a shared cache (CACHE_URL on Redis);
    # per process with the local-memory default. Without the cache every container is
    # inspected, as before, and the collection goes on.
    key = _inspections_key(engine)
    kept = None
    try:
        kept = cache.get(key)
    except Exception:
        logger.warning("Could not read %s's kept inspections", engine.name, exc_info=True)
    figures = docker_engine.engine_figures(
        engine,
        restarts_since=now - RESTARTS_WINDOW,
        kernel_figures=settings.MONITORING_DOCKER_KERNEL_FIGURES,
        kept=kept if isinstance(kept, dict) else None,
    )
    try:
        cache.set(key, figures.inspections, timeout=docker_engine.INSPECTION_MAX_AGE_SECONDS)
    except Exception:
        logger.warning("Could not keep %s's inspections in the cache", engine.name, exc_info=True)
    readings: list[Reading] = []
    used = 0
    for c in figures.containers:
        created_recently = c.created_at is not None and now - c.created_at <= RESTARTS_WINDOW
        before = previous.get(("container_restart_count", c.name))
        restarted = (
            c.restart_count > before[0] if before else created_recently and c.restart_count > 0
        )
        # The engine keeps OOMKilled set after the restart policy brought the container back,
        # so "OOM-killed" is a kill seen now: stopped by it, or restarted since the last look.
        oom_killed_now = c.oom_killed and (c.state != "running" or restarted)
        readings += [
            Reading("container_running", 1.0 if c.state == "running" else 0.0, c.name),
            Reading(
                "container_restart_count",
                c.restart_count,
                c.name,
                # The engine counts restarts from the container's creation: one created
                # within the window restarted that often within it, even before
                # monitoring's first sample of it.
                baseline=0.0 if created_recently else None,
                # A manual restart sets RestartCount back to 0; the engine's start events
                # within the window still count the crash loop it interrupted.
                window_count=c.restarts_recent,
            ),
            Reading("container_oom_killed", 1.0 if oom_killed_now else 0.0, c.name),
        ]
        if c.health in ("healthy", "unhealthy"):
            readings.append(
                Reading("container_healthy", 1.0 if c.health == "healthy" else 0.0, c.name)
            )
        if c.cpu_usage_seconds is not None:
            readings.append(Reading("container_cpu_usage_seconds", c.cpu_usage_seconds, c.name))
            before = previous.get(("container_cpu_usage_seconds", c.name))
            if before and c.cpu_usage_seconds >= before[0]:
                elapsed = (now - before[1]).total_seconds()
                if elapsed > 0:
                    cpu = (c.cpu_usage_seconds - before[0]) / elapsed * 100
                    readings.append(Reading("container_cpu_percent", round(cpu, 3), c.name))
                    if c.cpu_limit_cores:
                        readings.append(
                            Reading(
                                "container_cpu_limit_percent",
                                round(cpu / c.cpu_limit_cores, 3),
                                c.name,
                            )
                        )
        if c.cpu_limit_cores:
            readings.append(Reading("container_cpu_limit_cores", c.cpu_limit_cores, c.name))
        if c.memory_bytes is not None:
            used += c.memory_bytes
            readings.append(Reading("container_memory_bytes", c.memory_bytes, c.name))
            if c.memory_limit_bytes:
                readings += [
                    Reading("container_memory_limit_bytes", c.memory_limit_bytes, c.name),
                    Reading(
                        "container_memory_percent",
                        _percent(c.memory_bytes, c.memory_limit_bytes),
                        c.name,
                    ),
                ]
    if figures.memory_total_bytes:
        readings += [
            Reading("engine_memory_total_bytes", figures.memory_total_bytes),
            Reading("engine_memory_used_bytes", used),
            Reading("engine_memory_used_percent", _percent(used, figures.memory_total_bytes)),
        ]
    if figures.data_root_disk:
        readings += disk_readings(figures.data_root, *figures.data_root_disk)
    return readings


def collect_engine_reachable(engine, previous: Previous, now: dt.datetime) -> list[Reading]:
    """Only whether the engine answers (the collection's `up`): for a second registration of
    an engine whose figures are collected through its first registration."""
    docker_engine.ping(engine)
    return []


def disk_readings(path: str, total: int, free: int) -> list[Reading]:
    return [
        Reading("disk_total_bytes", total, path),
        Reading("disk_free_bytes", free, path),
        Reading("disk_used_percent", _percent(total - free, total), path),
    ]


def collect_backup_locations() -> list[Reading]:
    """Free space where backups are written (the portal's own filesystem)."""
    root = settings.BACKUP_ROOT
    root.mkdir(parents=True, exist_ok=True)
    usage = shutil.disk_usage(root)
    return disk_readings(str(root), usage.total, usage.free)


COLLECTORS: dict[str, Callable[[System, Previous, dt.datetime], list[Reading]]] = {
    SystemKind.HTTP: collect_http,
    SystemKind.POSTGRES: collect_postgres,
    SystemKind.REDIS: collect_redis,
    SystemKind.DOCKER: collect_docker,
}
