"""The runbook's default alert rules and the periodic tasks monitoring needs."""

from __future__ import annotations

from opsportal.monitoring.models import AlertRule
from opsportal.schedules import periodic_task_ensure
from opsportal.systems.models import SystemKind

# The runbook's Common Issues as rules: (name, metric, kind, comparison, threshold, for
# seconds, severity, category, runbook, auto-resolve).
DEFAULT_RULES = [
    ("API p95 above 500 ms", "http_latency_p95_ms", SystemKind.HTTP, "gt", 500, 300, "sev2",
     "api", "High API Response Times", True),
    ("API error rate above 5%", "http_error_rate_percent", SystemKind.HTTP, "gt", 5, 60, "sev2",
     "api", "High API Response Times", True),
    # Against the slots the application's user can get: with superuser_reserved_connections,
    # an exhausted application never reaches 90% of max_connections.
    ("Database connection use above 90%", "pg_connections_usable_percent", SystemKind.POSTGRES,
     "ge", 90, 60, "sev2", "database", "Database Connection Issues", True),
    ("Database connection errors", "up", SystemKind.POSTGRES, "eq", 0, 0, "sev1", "database",
     "Database Connection Issues", True),
    ("Container unhealthy", "container_healthy", SystemKind.DOCKER, "eq", 0, 60, "sev2",
     "container", "Container Issues", True),
    ("Container restarting repeatedly", "container_restarts_5m", SystemKind.DOCKER, "ge", 3, 0,
     "sev2", "container", "Container Issues", True),
    ("Container OOM-killed", "container_oom_killed", SystemKind.DOCKER, "eq", 1, 0, "sev2",
     "container", "Container Issues", False),
    ("Container memory above 90% of its limit", "container_memory_percent", SystemKind.DOCKER,
     "gt", 90, 120, "sev3", "container", "Container Issues", True),
    ("Docker engine not answering", "up", SystemKind.DOCKER, "eq", 0, 60, "sev1", "container",
     "Container Issues", True),
    ("Disk above 90% on a Docker host", "disk_used_percent", SystemKind.DOCKER, "gt", 90, 300,
     "sev2", "other", "", True),
    ("Backup location disk above 90%", "disk_used_percent", "", "gt", 90, 300, "sev2", "other",
     "", True),
    ("Redis not answering", "up", SystemKind.REDIS, "eq", 0, 60, "sev2", "other",
     "High API Response Times", True),
]  # fmt: skip


def monitoring_load_defaults() -> None:
    for (name, metric, kind, comparison, threshold, for_seconds, severity, category, runbook,
         auto_resolve) in DEFAULT_RULES:  # fmt: skip
        if not AlertRule.objects.filter(name=name).exists():
            AlertRule.objects.create(
                name=name,
                metric=metric,
                system_kind=kind,
                comparison=comparison,
                threshold=threshold,
                for_seconds=for_seconds,
                severity=severity,
                category=category,
                runbook_name=runbook,
                auto_resolve=auto_resolve,
                description="Loaded from the runbook's Monitoring & Alerting defaults.",
            )
    task = periodic_task_ensure(
        name="Collect key metrics",
        task="monitoring.collect",
        every_seconds=10,
        description="Samples each system whose collection interval has elapsed and "
        "evaluates the alert rules.",
    )
    if task.expire_seconds is None:
        # A tick the worker could not start within its own period is dropped, not queued
        # behind the next one: collectors never pile up.
        type(task).objects.filter(pk=task.pk).update(expire_seconds=10)
    periodic_task_ensure(
        name="Downsample old samples",
        task="monitoring.downsample",
        crontab={"minute": "17"},
        description="Folds samples older than the raw retention into 5-minute rollups.",
    )
    periodic_task_ensure(
        name="Prepare sample partitions",
        task="monitoring.prepare_sample_partitions",
        crontab={"minute": "7"},
        description="On PostgreSQL, creates the raw sample table's partitions for today "
        "and the next 7 days, so samples land in their day's partition and retention can "
        "drop whole days.",
    )
