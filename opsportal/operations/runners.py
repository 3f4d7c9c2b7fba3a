"""What each kind of operation does: resolve the target, call the adapters, and describe the
outcome in words for the operator (output) and as data (result).

Runners raise AdapterError (the system's failure, in words) or InvalidTarget; the service
turns either into a failed operation with that message.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.utils import timezone

from opsportal.operations.kinds import KINDS, TargetType
from opsportal.operations.masking import masked_inspect
from opsportal.systems.adapters import (
    docker_engine,
    http_endpoint,
    pg_activity,
    redis_cache,
)
from opsportal.systems.models import DockerEngine, HttpEndpoint, PostgresDatabase, RedisCache


class InvalidTarget(ValueError):
    """The chosen system cannot be the target of this kind of operation."""


@dataclass
class Outcome:
    output: str
    result: dict = field(default_factory=dict)


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


def _mib(value: float | None) -> str:
    return "—" if value is None else f"{value / 1_048_576:.1f} MiB"


def _table(rows: list[dict], columns: list[str]) -> str:
    if not rows:
        return "(none)"
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns)]
    lines += ["  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(lines)


# --- containers -------------------------------------------------------------------------


def run_container_list(target, params, operation) -> Outcome:
    engine = resolve_engine(target)
    rows = docker_engine.containers_list(engine, name_contains=params.get("name_contains", ""))
    unhealthy = [r for r in rows if r["health"] == "unhealthy" or r["state"] == "restarting"]
    summary = f"{len(rows)} containers on {engine.name}"
    if unhealthy:
        summary += f"; {len(unhealthy)} unhealthy or restarting"
    return Outcome(
        summary
        + ":\n"
        + _table(rows, ["name", "state", "health", "restart_count", "oom_killed", "image"]),
        {"containers": rows},
    )


def run_container_inspect(target, params, operation) -> Outcome:
    engine, name = resolve_container(target, params)
    # Shown in the admin and on the incident: masked here by name (the environment and
    # labels); the service masks every output by shape as well (services._finish).
    attrs = masked_inspect(docker_engine.container_inspect(engine, name))
    state = attrs.get("State") or {}
    return Outcome(
        f"{name} on {engine.name}: {state.get('Status')}, restarted "
        f"{attrs.get('RestartCount', 0)} times, OOM killed: {state.get('OOMKilled')}\n"
        + json.dumps(attrs, indent=2, sort_keys=True),
        {"state": state, "restart_count": attrs.get("RestartCount")},
    )


def run_container_logs(target, params, operation) -> Outcome:
    engine, name = resolve_container(target, params)
    text = docker_engine.container_logs(
        engine, name, lines=params.get("lines"), since_minutes=params.get("since_minutes")
    )
    count = text.count("\n")
    header = f"Last {count} log lines of {name} on {engine.name}"
    if params.get("since_minutes"):
        header += f" (last {params['since_minutes']} min)"
    return Outcome(header + ":\n" + (text or "(no log output)"), {"lines": count})


def run_container_stats(target, params, operation) -> Outcome:
    engine, name = resolve_container(target, params)
    stats = docker_engine.container_stats(engine, name)
    limit = _mib(stats["memory_limit_bytes"])
    if not stats["memory_limit_configured"]:
        limit += " (no limit set: the host's memory)"
    text = (
        f"{name} on {engine.name}: CPU {stats['cpu_percent']:.1f}% of "
        f"{stats['online_cpus']} CPUs"
        + (f" (limit {stats['cpu_limit']:g} CPUs)" if stats["cpu_limit"] else "")
        + f", memory {_mib(stats['memory_bytes'])} of {limit}"
        + (f" ({stats['memory_percent']:.1f}%)" if stats["memory_percent"] is not None else "")
        + (f", {stats['pids']} processes" if stats["pids"] is not None else "")
    )
    return Outcome(text, stats)


def _state_line(row: dict) -> str:
    return (
        f"{row['name']} is now {row['state']}"
        + (f" ({row['health']})" if row.get("health") else "")
        + f", restart count {row['restart_count']}"
    )


def run_container_restart(target, params, operation) -> Outcome:
    engine, name = resolve_container(target, params)
    row = docker_engine.container_restart(
        engine, name, timeout_seconds=params.get("timeout_seconds", 10)
    )
    return Outcome(f"Restarted {name} on {engine.name}. " + _state_line(row), row)


def run_container_stop(target, params, operation) -> Outcome:
    engine, name = resolve_container(target, params)
    row = docker_engine.container_stop(
        engine, name, timeout_seconds=params.get("timeout_seconds", 10)
    )
    return Outcome(f"Stopped {name} on {engine.name}. " + _state_line(row), row)


def run_container_start(target, params, operation) -> Outcome:
    engine, name = resolve_container(target, params)
    row = docker_engine.container_start(engine, name)
    return Outcome(f"Started {name} on {engine.name}. " + _state_line(row), row)


def run_service_scale(target, params, operation) -> Outcome:
    replicas = params["replicas"]
    if params.get("swarm_service"):
        engine = resolve_engine(target)
        result = docker_engine.swarm_service_scale(
            engine, params["swarm_service"], replicas=replicas
        )
        return Outcome(
            f"Swarm service {result['service']} on {engine.name}: "
            f"{result['replicas_before']} → {replicas} replicas.",
            result,
        )
    engine, name = resolve_container(target, params)
    result = docker_engine.compose_service_scale(engine, name, replicas=replicas)
    text = (
        f"Compose service {result['project']}/{result['service']} on {engine.name}: "
        f"{result['replicas_before']} → {result['replicas_after']} containers."
    )
    if result["created"]:
        text += " Created: " + ", ".join(result["created"]) + "."
    if result["removed"]:
        text += " Removed: " + ", ".join(result["removed"]) + "."
    if not result["created"] and not result["removed"]:
        text += " Nothing to change."
    return Outcome(text, result)


def run_container_update_limits(target, params, operation) -> Outcome:
    engine, name = resolve_container(target, params)
    if not params.get("memory_mb") and not params.get("cpus"):
        raise InvalidTarget("Give a new memory limit (memory_mb) or CPU limit (cpus), or both.")
    memory = params["memory_mb"] * 1_048_576 if params.get("memory_mb") else None
    result = docker_engine.container_update_limits(
        engine, name, memory_bytes=memory, cpus=params.get("cpus")
    )
    parts = []
    if result["memory_limit_bytes"]:
        parts.append(f"memory limit {_mib(result['memory_limit_bytes'])}")
    if result["cpu_quota"] and result["cpu_period"]:
        parts.append(f"CPU limit {result['cpu_quota'] / result['cpu_period']:g} CPUs")
    return Outcome(f"{name} on {engine.name} now has " + ", ".join(parts) + ".", result)


def run_engine_events(target, params, operation) -> Outcome:
    engine = resolve_engine(target)
    info = docker_engine.engine_info_and_events(
        engine, since_minutes=params.get("since_minutes", 60)
    )
    lines = [
        f"Docker {info['server_version']} on {engine.name}: {info['containers_running']} "
        f"running, {info['containers_stopped']} stopped, {info['containers_paused']} paused; "
        f"{info['cpus']} CPUs, {_mib(info['memory_bytes'])}, storage {info['storage_driver']}.",
    ]
    lines += [f"Warning: {w}" for w in info["warnings"]]
    notable = [e for e in info["events"] if e["action"] in {"die", "oom", "kill", "restart"}]
    lines.append(
        f"{len(info['events'])} events in the last {params.get('since_minutes', 60)} min"
        f" ({len(notable)} die/oom/kill/restart):"
    )
    for event in info["events"][-200:]:
        when = dt.datetime.fromtimestamp(event["time"], dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        lines.append(f"{when}  {event['type']:<9} {event['action']:<24} {event['actor']}")
    return Outcome("\n".join(lines), info)


# --- database ---------------------------------------------------------------------------


def _database(target) -> PostgresDatabase:
    return target.specific()


def _access_line(access: dict | pg_activity.OperatorAccess) -> str:
    if isinstance(access, dict):
        access = pg_activity.OperatorAccess(**access)
    return access.sentence


def run_db_connections(target, params, operation) -> Outcome:
    database = _database(target)
    summary = pg_activity.connection_summary(database)
    reserved = summary["superuser_reserved_connections"] + summary["reserved_connections"]
    user = summary["registered_user"]
    lines = [
        f"{summary['total']} of {summary['max_connections']} connections in use "
        f"({summary['used_percent']}%; {reserved} reserved "
        "for superusers) on the server of " + database.name + ".",
        f"The registered user {user!r} can get {summary['usable_by_user']} "
        + (
            "(it is a superuser)"
            if summary["registered_user_is_superuser"]
            else f"(the {summary['usable_limit']}'s limit)"
        )
        + f": {summary['usable_percent']}% used, {summary['available_to_user']} left"
        + (" — new connections of the application are refused." if not
           summary["available_to_user"] else "."),
    ]  # fmt: skip
    for title, key in [
        ("By state", "by_state"),
        ("By user", "by_user"),
        ("By application", "by_application"),
        ("By database", "by_database"),
    ]:
        lines.append(
            f"{title}: " + (", ".join(f"{name} {count}" for name, count in summary[key]) or "—")
        )
    lines.append(_access_line(summary["access"]))
    return Outcome("\n".join(lines), summary)


def run_db_long_queries(target, params, operation) -> Outcome:
    database = _database(target)
    found = pg_activity.long_running_queries(database, min_seconds=params["min_seconds"])
    rows = found.rows
    for row in rows:
        row["seconds"] = round(row["seconds"], 1)
    text = f"{len(rows)} statements running longer than {params['min_seconds']:g} s on " + (
        f"{database.name}:\n"
        + _table(rows, ["pid", "seconds", "state", "user", "application", "waiting_on", "query"])
    )
    return Outcome(
        text + "\n" + found.access.sentence,
        {"queries": rows, "access": found.access.as_dict()},
    )


def _run_signal(target, params, terminate: bool) -> Outcome:
    database = _database(target)
    pids, min_seconds = params.get("pids") or [], params.get("min_seconds")
    if not pids and min_seconds is None:
        raise InvalidTarget(
            "Name the queries to stop (pids) or a threshold (min_seconds): stopping every "
            "query of a database is never what the runbook means."
        )
    signalled = pg_activity.signal_backends(
        database, pids=pids, min_seconds=None if pids else min_seconds, terminate=terminate
    )
    rows = signalled.rows
    verb = "Terminated" if terminate else "Cancelled"
    done = [r for r in rows if r["signalled"]]
    which = f"pids {', '.join(map(str, pids))}" if pids else f"running over {min_seconds:g} s"
    text = f"{verb} {len(done)} of {len(rows)} queries ({which}) on {database.name}"
    if not rows:
        text = f"No query on {database.name} is {which}; nothing was {verb.lower()}."
    for row in rows:
        if row.get("seconds") is not None:
            row["seconds"] = round(row["seconds"], 1)
    return Outcome(
        text
        + ("\n" + _table(rows, ["pid", "signalled", "seconds", "user", "query"]) if rows else "")
        + "\n"
        + signalled.access.sentence,
        {"signalled": rows, "access": signalled.access.as_dict()},
    )


def run_db_cancel_queries(target, params, operation) -> Outcome:
    return _run_signal(target, params, terminate=False)


def run_db_terminate_queries(target, params, operation) -> Outcome:
    return _run_signal(target, params, terminate=True)


def run_db_terminate_idle(target, params, operation) -> Outcome:
    database = _database(target)
    state = params.get("state", "any")
    application, user = params.get("application_name", ""), params.get("user", "")
    idle_seconds = params.get("idle_seconds", 0)
    terminated = pg_activity.terminate_idle_connections(
        database,
        idle_seconds=idle_seconds,
        state=state,
        application_name=application,
        user=user,
    )
    rows = terminated.rows
    for row in rows:
        row["idle_seconds"] = round(row["idle_seconds"], 1)
    what = {"any": "idle", "idle": "idle", "idle in transaction": "idle in a transaction"}[state]
    whose = " and ".join(
        part
        for part in (
            f"of application {application!r}" if application else "",
            f"of user {user!r}" if user else "",
        )
        if part
    )
    text = (
        f"Terminated {sum(1 for r in rows if r['terminated'])} connections "
        f"{whose + ' ' if whose else ''}{what} for at least {idle_seconds:g} s on "
        f"{database.name} (never the portal's own)."
    )
    if rows:
        text += "\n" + _table(rows, ["pid", "state", "idle_seconds", "user", "application"])
    text += "\n" + terminated.access.sentence
    return Outcome(text, {"terminated": rows, "access": terminated.access.as_dict()})


def run_db_statistics(target, params, operation) -> Outcome:
    database = _database(target)
    stats = pg_activity.database_statistics(database)
    ratio = stats["cache_hit_ratio"]
    text = (
        f"{database.name}: {_mib(stats['size_bytes'])}, {stats['connections']} connections, "
        f"cache hit ratio {'—' if ratio is None else f'{ratio:.2%}'}, "
        f"{stats['commits']} commits / {stats['rollbacks']} rollbacks, "
        f"{stats['deadlocks']} deadlocks, {stats['temp_files']} temp files "
        f"({_mib(stats['temp_bytes'])}) since {stats['stats_reset'] or 'the statistics began'}."
        "\nLargest tables:\n"
        + _table(
            stats["largest_tables"],
            ["table", "size_bytes", "live_rows", "dead_rows", "seq_scans", "index_scans"],
        )
        + "\n"
        + _access_line(stats["access"])
    )
    return Outcome(text, stats)


def run_db_container_logs(target, params, operation) -> Outcome:
    database = _database(target)
    if not database.runs_in_container:
        raise InvalidTarget(
            f"{database.name} does not run in a container the portal knows, so its logs "
            "cannot be read here: set its Docker engine and container name."
        )
    text = docker_engine.container_logs(
        database.docker_engine, database.container_name, lines=params.get("lines", 200)
    )
    return Outcome(
        f"Last {text.count(chr(10))} log lines of {database.container_name}:\n"
        + (text or "(no log output)"),
        {"lines": text.count("\n")},
    )


# --- cache ------------------------------------------------------------------------------


def run_cache_statistics(target, params, operation) -> Outcome:
    cache = target.specific()
    stats = redis_cache.cache_statistics(cache)
    rate = stats["hit_rate"]
    text = (
        f"{cache.name}: hit rate {'— (no lookups yet)' if rate is None else f'{rate:.1%}'} "
        f"({stats['keyspace_hits']} hits, {stats['keyspace_misses']} misses), memory "
        f"{stats['used_memory_human']}"
        + (f" of {_mib(stats['maxmemory_bytes'])}" if stats["maxmemory_bytes"] else " (no limit)")
        + f", {stats['evicted_keys']} evictions, {stats['connected_clients']} clients, "
        f"{stats['keys_in_database']} keys in db {stats['database']}."
    )
    return Outcome(text, stats)


def run_cache_clear(target, params, operation) -> Outcome:
    cache = target.specific()
    pattern = params.get("pattern", "")
    removed = redis_cache.cache_clear(cache, pattern=pattern)
    if pattern and not removed:
        text = f"No keys match {pattern!r} in db {cache.db} of {cache.name}; nothing was removed."
    elif pattern:
        text = f"Removed {removed} keys matching {pattern!r} from db {cache.db} of {cache.name}."
    else:
        text = f"Cleared db {cache.db} of {cache.name}: {removed} keys removed."
    return Outcome(text, {"removed": removed, "pattern": pattern})


# --- API --------------------------------------------------------------------------------

INCIDENT_P95_MS = 500  # the runbook: "API responses >500ms" is an incident's symptom


def run_api_probe(target, params, operation) -> Outcome:
    endpoint = target.specific()
    result = http_endpoint.probe(
        endpoint, count=params.get("count", 20), interval_ms=params.get("interval_ms", 0)
    )
    p95 = result["p95_ms"]
    if p95 is None:
        verdict = "no request succeeded"
    elif p95 > INCIDENT_P95_MS:
        verdict = f"over {INCIDENT_P95_MS} ms: an incident by the runbook"
    elif p95 >= endpoint.latency_target_ms:
        verdict = f"above the target of {endpoint.latency_target_ms} ms"
    else:
        verdict = f"within the target of {endpoint.latency_target_ms} ms"
    result["verdict"] = verdict
    text = (
        f"{result['requests']} requests to {endpoint.url}: p50 "
        f"{result['p50_ms'] if result['p50_ms'] is not None else '—'} ms, p95 "
        f"{p95 if p95 is not None else '—'} ms ({verdict}), error rate "
        f"{result['error_rate']:.0%}."
    )
    if result["first_errors"]:
        text += " Errors: " + "; ".join(result["first_errors"])
    return Outcome(text, result)


# --- security ---------------------------------------------------------------------------


def run_container_isolate(target, params, operation) -> Outcome:
    engine, name = resolve_container(target, params)
    result = docker_engine.container_isolate(engine, name, method=params.get("method", "auto"))
    return Outcome(
        f"Isolated {name} on {engine.name} ({result['method']}): "
        + " ".join(result["steps"])
        + f" It is now {result['state']}.",
        result,
    )


def evidence_directory(operation) -> Path:
    # The timestamp keeps a restored or re-created database from reusing a directory.
    stamp = operation.requested_at.strftime("%Y%m%dT%H%M%S%f")
    return Path(settings.MEDIA_ROOT) / "evidence" / f"operation-{operation.pk}-{stamp}"


# Evidence holds a container's environment (its credentials) and possibly its whole
# filesystem: only the portal's own user may read it, from the first byte written. The
# modes are given when a directory or file is created (the umask can only narrow them),
# never set afterwards, so no other local user can open a file while it is being written.
EVIDENCE_DIRECTORY_MODE = 0o700
EVIDENCE_FILE_MODE = 0o600


def evidence_directory_create(operation) -> Path:
    directory = evidence_directory(operation)
    Path(settings.MEDIA_ROOT).mkdir(parents=True, exist_ok=True)
    directory.parent.mkdir(mode=EVIDENCE_DIRECTORY_MODE, exist_ok=True)
    directory.mkdir(mode=EVIDENCE_DIRECTORY_MODE)
    return directory


def evidence_file_create(path: Path) -> BinaryIO:
    """A new evidence file, open for writing, readable by the portal's user only; refuses
    to overwrite a file or follow a link planted at its name."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    return os.fdopen(os.open(path, flags, EVIDENCE_FILE_MODE), "wb")


def run_evidence_preserve(target, params, operation) -> Outcome:
    """Logs, inspect output and `docker diff` (and optionally the exported filesystem),
    each written once with its SHA-256 and recorded as Evidence with who captured it when."""
    from opsportal.operations.models import Evidence

    engine, name = resolve_container(target, params)
    directory = evidence_directory_create(operation)
    source = f"{name} on {engine.name} ({engine.base_url})"

    def store(filename: str, content: bytes, description: str) -> Evidence:
        path = directory / filename
        with evidence_file_create(path) as handle:
            handle.write(content)
        return _record(
            filename, path, len(content), hashlib.sha256(content).hexdigest(), description
        )

    def _record(filename, path, size, digest, description) -> Evidence:
        return Evidence.objects.create(
            operation=operation,
            incident_id=operation.incident_id,
            name=filename,
            description=description,
            path=str(path.relative_to(settings.MEDIA_ROOT)),
            size_bytes=size,
            sha256=digest,
            captured_by=operation.requested_by,
            captured_at=timezone.now(),
            source_system=source,
        )

    items = [
        store(
            "logs.txt",
            docker_engine.container_logs(engine, name, lines=params.get("log_lines")).encode(),
            f"Last {params.get('log_lines')} log lines, with timestamps",
        ),
        store(
            "inspect.json",
            json.dumps(
                docker_engine.container_inspect(engine, name), indent=2, sort_keys=True
            ).encode(),
            "docker inspect (configuration and state)",
        ),
        store(
            "diff.json",
            json.dumps(docker_engine.container_diff(engine, name), indent=2).encode(),
            "docker diff: filesystem changes since the container was created",
        ),
    ]
    if params.get("export_filesystem"):
        path = directory / "filesystem.tar"
        with evidence_file_create(path) as handle:
            size, digest = docker_engine.container_export(engine, name, into=handle)
        items.append(_record("filesystem.tar", path, size, digest, "docker export"))
    lines = [f"Preserved {len(items)} items from {source}:"]
    lines += [f"{e.name}  {e.size_bytes} bytes  sha256 {e.sha256}" for e in items]
    return Outcome(
        "\n".join(lines),
        {"evidence": [{"id": e.pk, "name": e.name, "sha256": e.sha256} for e in items]},
    )


RUNNERS: dict[str, Callable[..., Outcome]] = {kind: globals()[f"run_{kind}"] for kind in KINDS}
