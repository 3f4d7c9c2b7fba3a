"""Runners that act on containers, Compose/Swarm services and the Docker engine itself."""

from __future__ import annotations

import datetime as dt
import json

from opsportal.operations.masking import masked_inspect
from opsportal.operations.runners.outcome import Outcome, _mib, _table
from opsportal.operations.runners.targets import InvalidTarget, resolve_container, resolve_engine
from opsportal.systems.adapters import docker_engine


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
