"""The figures monitoring collects: the runbook's "Key Metrics to Monitor", one name each.

Values are stored in the units operators think in (milliseconds, percent); the Prometheus
export converts them to base units (seconds, ratios) with `export_scale`.
"""

from __future__ import annotations

from dataclasses import dataclass

from opsportal.systems.models import SystemKind


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kinds: tuple[str, ...]  # system kinds that have it; () = portal-level (backup locations)
    unit: str
    help: str
    subject: str = ""  # what `subject` names for this metric: "container", "path", or ""
    export_name: str = ""
    export_scale: float = 1.0

    @property
    def prometheus_name(self) -> str:
        return "opsportal_" + (self.export_name or self.name)


ALL_KINDS = tuple(SystemKind.values)
_HTTP, _PG, _REDIS, _DOCKER = (
    (SystemKind.HTTP,),
    (SystemKind.POSTGRES,),
    (SystemKind.REDIS,),
    (SystemKind.DOCKER,),
)

METRICS: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in [
        MetricSpec(
            "up",
            ALL_KINDS,
            "1/0",
            "1 if the last collection from the system succeeded, 0 if it failed.",
            export_name="collection_up",
        ),
        MetricSpec(
            "collection_duration_ms",
            ALL_KINDS,
            "ms",
            "How long the last collection from the system took.",
            export_name="collection_duration_seconds",
            export_scale=0.001,
        ),
        # API response time (target < 200 ms P95; > 500 ms is "High API Response Times")
        MetricSpec(
            "http_latency_ms",
            _HTTP,
            "ms",
            "Response time of the last probe of the endpoint.",
            export_name="http_latency_seconds",
            export_scale=0.001,
        ),
        MetricSpec(
            "http_error", _HTTP, "1/0", "1 if the last probe failed (non-2xx or no answer)."
        ),
        MetricSpec(
            "http_latency_p50_ms",
            _HTTP,
            "ms",
            "Median probe response time over the rolling window.",
            export_name="http_latency_p50_seconds",
            export_scale=0.001,
        ),
        MetricSpec(
            "http_latency_p95_ms",
            _HTTP,
            "ms",
            "95th percentile probe response time over the rolling window.",
            export_name="http_latency_p95_seconds",
            export_scale=0.001,
        ),
        MetricSpec(
            "http_error_rate_percent",
            _HTTP,
            "%",
            "Share of probes over the rolling window that failed (non-2xx or timeout).",
            export_name="http_error_ratio",
            export_scale=0.01,
        ),
        # Database connection pool
        MetricSpec("pg_connections_active", _PG, "", "Client connections running a query."),
        MetricSpec("pg_connections_idle", _PG, "", "Idle client connections."),
        MetricSpec(
            "pg_connections_idle_in_transaction",
            _PG,
            "",
            "Client connections idle inside an open transaction.",
        ),
        MetricSpec("pg_connections_waiting", _PG, "", "Client connections waiting on a lock."),
        MetricSpec("pg_connections_max", _PG, "", "The server's max_connections."),
        MetricSpec(
            "pg_connections_used_percent",
            _PG,
            "%",
            "Client connections against max_connections.",
            export_name="pg_connections_used_ratio",
            export_scale=0.01,
        ),
        # The slots the registered (application's) user can actually get: a user that is
        # not a superuser is refused at max_connections less the reserved slots, or at its
        # role's or database's connection limit if lower; "Too many connections" comes there.
        MetricSpec(
            "pg_connections_usable_max",
            _PG,
            "",
            "Connection slots the registered user can get: max_connections less the "
            "superuser_reserved_connections (and reserved_connections) it may not use, or its "
            "role's or database's connection limit if that is nearer.",
        ),
        MetricSpec(
            "pg_connections_available_to_user",
            _PG,
            "",
            "Connections the registered user can still open before it is refused.",
        ),
        MetricSpec(
            "pg_connections_usable_percent",
            _PG,
            "%",
            "Connections held against the slots the registered user can get (100%: the "
            "application is refused new connections).",
            export_name="pg_connections_usable_ratio",
            export_scale=0.01,
        ),
        MetricSpec("pg_long_running_queries", _PG, "", "Queries running for longer than a minute."),
        # Container health, memory usage
        MetricSpec(
            "container_running", _DOCKER, "1/0", "1 if the container is running.", "container"
        ),
        MetricSpec(
            "container_healthy",
            _DOCKER,
            "1/0",
            "1 if the container's healthcheck passes, 0 if unhealthy (only with a healthcheck).",
            "container",
        ),
        MetricSpec(
            "container_restart_count",
            _DOCKER,
            "",
            "Restarts of the container by the engine since it was created.",
            "container",
        ),
        MetricSpec(
            "container_restarts_5m",
            _DOCKER,
            "",
            "Restarts of the container within the last five minutes, from the engine's "
            "start events (a manual restart does not reset it, unlike RestartCount).",
            "container",
            export_name="container_restarts_recent",
        ),
        MetricSpec(
            "container_oom_killed",
            _DOCKER,
            "1/0",
            "1 if the container's last exit was an OOM kill.",
            "container",
        ),
        MetricSpec(
            "container_cpu_usage_seconds",
            _DOCKER,
            "s",
            "CPU time the container has used (cumulative).",
            "container",
        ),
        MetricSpec(
            "container_cpu_percent",
            _DOCKER,
            "%",
            "CPU use of the container since the previous sample (100% = one CPU).",
            "container",
            export_name="container_cpu_ratio",
            export_scale=0.01,
        ),
        MetricSpec(
            "container_cpu_limit_cores",
            _DOCKER,
            "CPUs",
            "CPUs the container may use (only when a CPU limit is set).",
            "container",
        ),
        MetricSpec(
            "container_cpu_limit_percent",
            _DOCKER,
            "%",
            "CPU use of the container since the previous sample against its CPU limit.",
            "container",
            export_name="container_cpu_limit_ratio",
            export_scale=0.01,
        ),
        MetricSpec(
            "container_memory_bytes", _DOCKER, "B", "Memory used by the container.", "container"
        ),
        MetricSpec(
            "container_memory_limit_bytes",
            _DOCKER,
            "B",
            "The container's memory limit (only when one is set).",
            "container",
        ),
        MetricSpec(
            "container_memory_percent",
            _DOCKER,
            "%",
            "Memory used by the container against its limit.",
            "container",
            export_name="container_memory_limit_ratio",
            export_scale=0.01,
        ),
        MetricSpec("engine_memory_total_bytes", _DOCKER, "B", "Memory of the Docker host."),
        MetricSpec(
            "engine_memory_used_bytes",
            _DOCKER,
            "B",
            "Memory used by all containers on the Docker host.",
        ),
        MetricSpec(
            "engine_memory_used_percent",
            _DOCKER,
            "%",
            "Memory used by containers against the Docker host's memory.",
            export_name="engine_memory_used_ratio",
            export_scale=0.01,
        ),
        # Disk space: the engine's data root and the backup locations (portal-level)
        MetricSpec("disk_total_bytes", (*_DOCKER, ""), "B", "Size of the filesystem.", "path"),
        MetricSpec("disk_free_bytes", (*_DOCKER, ""), "B", "Free space on the filesystem.", "path"),
        MetricSpec(
            "disk_used_percent",
            (*_DOCKER, ""),
            "%",
            "Used space of the filesystem.",
            "path",
            export_name="disk_used_ratio",
            export_scale=0.01,
        ),
        # Cache
        MetricSpec(
            "redis_hit_rate_percent",
            _REDIS,
            "%",
            "Keyspace hits against lookups since the previous sample (or since start).",
            export_name="redis_hit_ratio",
            export_scale=0.01,
        ),
        MetricSpec("redis_keyspace_hits", _REDIS, "", "Keyspace hits since the server started."),
        MetricSpec(
            "redis_keyspace_misses", _REDIS, "", "Keyspace misses since the server started."
        ),
        MetricSpec("redis_memory_used_bytes", _REDIS, "B", "Memory used by Redis."),
        MetricSpec("redis_memory_max_bytes", _REDIS, "B", "Redis maxmemory (0: no limit)."),
        MetricSpec(
            "redis_memory_used_percent",
            _REDIS,
            "%",
            "Memory used against maxmemory (only with a limit).",
            export_name="redis_memory_used_ratio",
            export_scale=0.01,
        ),
        MetricSpec("redis_evicted_keys", _REDIS, "", "Keys evicted since the server started."),
        MetricSpec("redis_connected_clients", _REDIS, "", "Connected clients."),
    ]
}

METRIC_CHOICES = [(name, name) for name in METRICS]

# The figures the overview and each system's page chart, by kind.
KEY_METRICS: dict[str, tuple[str, ...]] = {
    SystemKind.HTTP: ("http_latency_p95_ms", "http_error_rate_percent"),
    SystemKind.POSTGRES: (
        "pg_connections_usable_percent",
        "pg_connections_used_percent",
        "pg_long_running_queries",
    ),
    SystemKind.REDIS: ("redis_hit_rate_percent", "redis_memory_used_bytes"),
    SystemKind.DOCKER: ("engine_memory_used_percent", "disk_used_percent"),
}
