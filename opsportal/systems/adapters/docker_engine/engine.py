"""What the engine says about itself: reachability and identity (`ping`, with the engine's ID
that duplicate registrations are found by), its facts and recent events (`engine_info_and_events`,
the runbook's "Review Docker daemon logs"), and the figures monitoring samples in one pass
(`engine_figures`: every container's state, health, restarts, OOM kills, CPU and memory, the
host's memory and the data root's disk).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import docker
import docker.errors
import requests

from opsportal.systems.adapters.docker_engine.connection import client
from opsportal.systems.adapters.results import PingResult

if TYPE_CHECKING:
    import datetime as dt

    from opsportal.systems.models import DockerEngine


def ping(engine: DockerEngine) -> PingResult:
    with client(engine) as docker_client:
        docker_client.ping()
        info = docker_client.info()
    return PingResult(
        summary=(
            f"Docker {info.get('ServerVersion', '?')} on {info.get('Name', '?')}: "
            f"{info.get('ContainersRunning', 0)} running, {info.get('ContainersStopped', 0)} "
            f"stopped containers"
        ),
        details={
            "server_version": info.get("ServerVersion"),
            "containers_running": info.get("ContainersRunning"),
            "containers_stopped": info.get("ContainersStopped"),
            "images": info.get("Images"),
            "memory_bytes": info.get("MemTotal"),
            "cpus": info.get("NCPU"),
            "docker_root_dir": info.get("DockerRootDir"),
            "engine_id": info.get("ID") or "",
        },
    )


@dataclass(frozen=True)
class ContainerFigures:
    """What monitoring samples of one container; None where the engine had no figure."""

    name: str
    state: str
    health: str | None  # "healthy", "unhealthy", "starting", or None without a healthcheck
    restart_count: int
    oom_killed: bool
    cpu_usage_seconds: float | None
    memory_bytes: int | None
    memory_limit_bytes: int | None
    # When the engine created the container: RestartCount counts from then.
    created_at: dt.datetime | None = None
    # CPUs the container may use (--cpus, or a CFS quota); None when it has no CPU limit.
    cpu_limit_cores: float | None = None
    container_id: str = ""
    # Restarts since `restarts_since`, from the engine's own start events (None: not asked,
    # or the engine did not give its events). Unlike RestartCount, a manual restart does not
    # reset it, and a replaced container of the same name starts again from 0.
    restarts_recent: int | None = None


@dataclass(frozen=True)
class EngineFigures:
    containers: list[ContainerFigures]
    memory_total_bytes: int
    cpus: int
    data_root: str
    data_root_disk: tuple[int, int] | None  # (total, free) bytes, when the data root is local
    # The containers' inspections, to hand to the next pass (`engine_figures(kept=…)`).
    inspections: dict | None = None
    # The containers (IDs) this pass inspected; the others' inspections were kept.
    inspected: frozenset[str] = frozenset()


# Inspecting every container on every pass was most of an engine's collection: a request and
# a JSON document per container, on the worker and on the engine. What an inspection adds to
# the listing (restart count, OOM kill, main PID, limits, creation time) changes only with an
# event of that container, so an inspection is kept and repeated only for a container that is
# new, whose state or health in the listing differs from it, or that has one of these events
# since the pass that kept it. Everything is inspected again when the events cannot be read,
# when the engine's event buffer (ENGINE_EVENTS_BUFFER, every kind of event: a container's
# health-check execs fill it quickly) no longer reaches back to the last pass, and at the
# latest after INSPECTION_MAX_AGE_SECONDS.
INSPECTION_EVENTS = (
    "create", "start", "restart", "die", "kill", "oom", "stop",
    "pause", "unpause", "update", "rename", "destroy",
)  # fmt: skip
# The engine keeps its last 256 events of every kind (Docker's eventsLimit): a read that
# returns that many may have lost older ones.
ENGINE_EVENTS_BUFFER = 256
INSPECTION_MAX_AGE_SECONDS = 300
# Events are read from a little before the previous pass's listing, on the engine's clock.
INSPECTION_EVENTS_SLACK_SECONDS = 2.0


def _kept_inspection(attrs: dict, read_at: float) -> dict:
    """What `_container_figures` reads of an inspection, and when it was read."""
    state = attrs.get("State") or {}
    host = attrs.get("HostConfig") or {}
    kept_state = {k: state.get(k) for k in ("Status", "Running", "Pid", "OOMKilled")}
    if state.get("Health"):
        kept_state["Health"] = {"Status": state["Health"].get("Status")}
    return {
        "Id": attrs.get("Id"),
        "Name": attrs.get("Name"),
        "Created": attrs.get("Created"),
        "RestartCount": attrs.get("RestartCount"),
        "State": kept_state,
        "HostConfig": {k: host.get(k) for k in ("Memory", "NanoCpus", "CpuQuota", "CpuPeriod")},
        "read_at": read_at,
    }


def _listed_health(status: str) -> str | None:
    """The health the listing's status text shows ("Up 2 minutes (healthy)")."""
    for marker, health in (
        ("(healthy)", "healthy"),
        ("(unhealthy)", "unhealthy"),
        ("(health: starting)", "starting"),
    ):
        if marker in status:
            return health
    return None


_LISTED_SINCE = re.compile(
    r"^(?:Up|Exited \(-?\d+\)|Restarting \(-?\d+\)) (.+?)(?: ago)?(?: \(.*\))?$"
)
_DURATION_WORDS = {
    "less than a second": 0, "about a minute": 60, "about an hour": 3600,
}  # fmt: skip
_DURATION_UNITS = {
    "second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 604800,
    "month": 2_592_000, "year": 31_536_000,
}  # fmt: skip


def _listed_since_seconds(status: str) -> float | None:
    """At least how long ago the listing says the container started, exited or began
    restarting ("Up 2 hours (healthy)", "Exited (1) 5 seconds ago"); None when it does not
    say ("Created")."""
    match = _LISTED_SINCE.match(status)
    if not match:
        return None
    text = match[1].strip().lower()
    if text in _DURATION_WORDS:
        return _DURATION_WORDS[text]
    number, _, unit = text.partition(" ")
    try:
        return int(number) * _DURATION_UNITS[unit.rstrip("s")]
    except (ValueError, KeyError):
        return None


def _still_true(kept: dict | None, summary: dict, changed: set[str], listed_at: float) -> bool:
    """Whether a kept inspection still describes the listed container: no event of it since,
    the same state (and health, while it runs: a stopped container's listing shows none), not
    older than INSPECTION_MAX_AGE_SECONDS, and (should the event have been lost) not started,
    stopped or restarted since it was read, by the listing's own "Up …" / "Exited (…) … ago".
    `listed_at` is when the listing was taken, on the engine's clock."""
    if not kept or summary["Id"] in changed:
        return False
    state = kept.get("State") or {}
    age = listed_at - kept.get("read_at", 0)
    listed = summary.get("Status", "")
    since = _listed_since_seconds(listed)
    return (
        age < INSPECTION_MAX_AGE_SECONDS
        and state.get("Status") == summary.get("State")
        and (
            summary.get("State") != "running"
            or (state.get("Health") or {}).get("Status") == _listed_health(listed)
        )
        and (since is None or since > age + INSPECTION_EVENTS_SLACK_SECONDS)
    )


def _container_figures(
    api: docker.APIClient,
    summary: dict,
    local: bool = False,
    attrs: dict | None = None,
    ask_engine: bool = True,
) -> ContainerFigures | None:
    """One container's figures; `attrs` is its inspection when one is kept from an earlier
    pass (see `engine_figures`). With `ask_engine` False, None when its CPU and memory would
    have to be asked of the engine's stats: the caller asks for them concurrently."""
    container_id = summary["Id"]
    if attrs is None:
        attrs = api.inspect_container(container_id)
    state = attrs.get("State") or {}
    health = (state.get("Health") or {}).get("Status")
    cpu_seconds = memory = None
    if state.get("Running"):
        kernel = (
            _kernel_figures(state.get("Pid"), attrs.get("Id") or container_id) if local else None
        )
        if kernel is not None:
            cpu_seconds, memory = kernel
        elif not ask_engine:
            return None
        else:
            cpu_seconds, memory = _stats_figures(api, container_id)
    configured_limit = (attrs.get("HostConfig") or {}).get("Memory") or None
    name = (attrs.get("Name") or container_id[:12]).lstrip("/")
    return ContainerFigures(
        name=name,
        state=state.get("Status", "unknown"),
        health=health,
        restart_count=int(attrs.get("RestartCount") or 0),
        oom_killed=bool(state.get("OOMKilled")),
        cpu_usage_seconds=cpu_seconds,
        memory_bytes=memory,
        # Without a configured limit the engine reports the host's memory as the limit,
        # which is not a limit the container can hit before the host does.
        memory_limit_bytes=configured_limit or None,
        created_at=_engine_time(attrs.get("Created")),
        cpu_limit_cores=_cpu_limit_cores(attrs.get("HostConfig") or {}),
        container_id=attrs.get("Id") or container_id,
    )


def _stats_figures(api: docker.APIClient, container_id: str) -> tuple[float | None, int | None]:
    """CPU seconds used and memory in use, from the engine's stats API.

    one_shot: the engine answers at its next stats tick instead of waiting for a second one
    to compute precpu figures (monitoring computes CPU use from its own previous sample).
    The tick still comes up to a second later (the engine's stats collector samples every
    second, and a burst of requests mostly lands in the next sample)."""
    try:
        stats = api.stats(container_id, stream=False, one_shot=True)
    except ValueError:
        # An empty answer ("Expecting value: line 1 column 1"), seen on the shared test
        # engine while containers died: this container has no CPU/memory figure this
        # round, and the engine's other containers are still collected.
        stats = {}
    total = ((stats.get("cpu_stats") or {}).get("cpu_usage") or {}).get("total_usage")
    cpu_seconds = total / 1e9 if total is not None else None
    memory_stats = stats.get("memory_stats") or {}
    usage = memory_stats.get("usage")
    memory = None
    if usage is not None:
        # What `docker stats` shows: usage minus reclaimable page cache.
        inner = memory_stats.get("stats") or {}
        cache = inner.get("inactive_file", inner.get("total_inactive_file", 0))
        memory = max(usage - cache, 0)
    return cpu_seconds, memory


CGROUP_ROOT = Path("/sys/fs/cgroup")


def _kernel_figures(pid: int | None, container_id: str) -> tuple[float, int] | None:
    """CPU seconds used and memory in use of a container of an engine on this host, read
    from the kernel's cgroup files (the ones the engine's stats read), without waiting for
    the engine's stats tick. None when they are not readable from here (the worker runs in
    another PID or cgroup namespace, the process is gone, an unknown layout): the caller
    then asks the engine.

    The container's main process names its cgroups in /proc/<pid>/cgroup; they are used only
    when that path names the container's own ID, so a reused PID or a namespaced /proc
    never lends another process's figures."""
    if not pid:
        return None
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
        paths: dict[str, str] = {}
        for line in lines:
            _, controllers, path = line.split(":", 2)
            for controller in controllers.split(","):
                paths[controller] = path.lstrip("/")
        unified = (CGROUP_ROOT / "cgroup.controllers").exists()
        if not all(container_id in paths[c] for c in ([""] if unified else ["memory", "cpuacct"])):
            return None
        if unified:  # cgroup v2, one hierarchy
            base = CGROUP_ROOT / paths[""]
            cpu_seconds = _flat_keys(base / "cpu.stat")["usage_usec"] / 1e6
            usage = int((base / "memory.current").read_text())
            inactive = _flat_keys(base / "memory.stat").get("inactive_file", 0)
        else:  # cgroup v1: a hierarchy per controller
            cpu_ns = int((CGROUP_ROOT / "cpuacct" / paths["cpuacct"] / "cpuacct.usage").read_text())
            cpu_seconds = cpu_ns / 1e9
            memory_dir = CGROUP_ROOT / "memory" / paths["memory"]
            usage = int((memory_dir / "memory.usage_in_bytes").read_text())
            stat = _flat_keys(memory_dir / "memory.stat")
            inactive = stat.get("inactive_file", stat.get("total_inactive_file", 0))
    except (OSError, KeyError, ValueError):
        return None
    # What `docker stats` shows: usage minus reclaimable page cache.
    return cpu_seconds, max(usage - inactive, 0)


def _flat_keys(path: Path) -> dict[str, int]:
    return {k: int(v) for k, v in (line.split() for line in path.read_text().splitlines())}


def _engine_events(api: docker.APIClient, *, since: float, until: float) -> list[dict]:
    """Every event the engine still holds between `since` and `until`, oldest first (seconds
    on the engine's clock; `until` is its current time with its fraction, as the engine waits
    for an `until` in the future before it answers). Unfiltered, so that a read that comes
    back with ENGINE_EVENTS_BUFFER of them shows the buffer may have dropped some."""
    return _read_events(api, since=f"{since:.9f}", until=f"{until:.9f}")


def _inspection_changes(events: list[dict], *, since: float) -> set[str]:
    """Containers (IDs) with an INSPECTION_EVENTS event since `since`."""
    return {
        _event_container(e)
        for e in events
        if e.get("Type") == "container"
        and e.get("Action") in INSPECTION_EVENTS
        and _event_time(e) >= since
    }


def _event_container(event: dict) -> str:
    return (event.get("Actor") or {}).get("ID") or event.get("id") or ""


def _event_time(event: dict) -> float:
    return event["timeNano"] / 1e9 if event.get("timeNano") else float(event.get("time") or 0)


def _container_starts(events: list[dict], *, since: float) -> dict[str, int]:
    """How often the engine started each container (by ID) since `since` (engine clock):
    restart-policy restarts, `docker restart` and `docker start` each log one start event.
    The engine keeps only its last few hundred events (256 on Docker 20.10), so on a busy
    engine this is a lower bound."""
    starts: dict[str, int] = {}
    for event in events:
        if (
            event.get("Type") == "container"
            and event.get("Action") == "start"
            and _event_time(event) >= since
        ):
            container_id = _event_container(event)
            starts[container_id] = starts.get(container_id, 0) + 1
    return starts


def _read_events(api: docker.APIClient, *, since, until, filters: dict | None = None) -> list[dict]:
    """The engine's events between `since` and `until` (one JSON object a line). The SDK's
    own decoding raises StreamParseError when the last newline arrives in a chunk of its
    own, so the lines are parsed here."""
    pieces = api.events(since=since, until=until, filters=filters, decode=False)
    raw = b"".join(p.encode() if isinstance(p, str) else p for p in pieces)
    return [json.loads(line) for line in raw.splitlines() if line.strip()]


def _restarts_since(figures: ContainerFigures, starts: dict[str, int], since: dt.datetime) -> int:
    count = starts.get(figures.container_id, 0)
    # A container created within the window was started once without being restarted.
    if figures.created_at is not None and figures.created_at >= since and count:
        count -= 1
    return count


def _cpu_limit_cores(host_config: dict) -> float | None:
    if host_config.get("NanoCpus"):
        return host_config["NanoCpus"] / 1e9
    quota, period = host_config.get("CpuQuota") or 0, host_config.get("CpuPeriod") or 100_000
    return quota / period if quota > 0 else None


def _engine_time(value: str | None) -> dt.datetime | None:
    """The engine's RFC 3339 timestamps carry nanoseconds, more than fromisoformat takes."""
    import datetime as dt
    import re

    if not value or value.startswith("0001-"):
        return None
    value = re.sub(r"(\.\d{6})\d+", r"\1", value).replace("Z", "+00:00")
    try:
        return dt.datetime.fromisoformat(value)
    except ValueError:
        return None


def engine_figures(
    engine: DockerEngine,
    *,
    max_workers: int = 64,
    restarts_since: dt.datetime | None = None,
    kernel_figures: bool = True,
    kept: dict | None = None,
) -> EngineFigures:
    """Every container's state, health, restarts, OOM kills, CPU and memory, and the host's
    memory and data-root disk, in one pass (containers inspected concurrently); with
    `restarts_since`, also each container's restarts since then, from the engine's events.
    With `kernel_figures`, an engine on this host (unix://) gives its containers' CPU and
    memory through the kernel's cgroup files where this process can read them.
    `kept` is the `inspections` of an earlier pass over this engine: inspections still true
    are not repeated (see INSPECTION_EVENTS).

    The engine answers a one-shot stats request at its next stats tick (about 1 s, measured
    on Docker 28), however many requests wait for it; so asking for all containers at once
    takes about one tick, where 8 at a time took 7 s for 57 containers."""
    from concurrent.futures import ThreadPoolExecutor

    with client(engine) as docker_client:
        api = docker_client.api
        asked_at = time.time()
        info = api.info()
        # Event times are the engine's: the portal's times are moved onto its clock (the
        # engine read its clock about halfway through the request).
        engine_time = _engine_time(info.get("SystemTime"))
        offset = engine_time.timestamp() - (asked_at + time.time()) / 2 if engine_time else 0.0
        engine_now = time.time() + offset
        kept_containers = (kept or {}).get("containers") or {}
        previous_read = (kept or {}).get("read_at", 0.0) - INSPECTION_EVENTS_SLACK_SECONDS
        since = (
            [max(previous_read, engine_now - INSPECTION_MAX_AGE_SECONDS)] if kept_containers else []
        )
        if restarts_since is not None:
            since.append(restarts_since.timestamp() + offset)
        events = None
        if since:
            # Read before the containers are listed: a start in between then shows in
            # RestartCount and in a changed inspection, never in the events only.
            try:
                events = _engine_events(api, since=min(since), until=time.time() + offset)
            except (docker.errors.APIError, requests.exceptions.RequestException, ValueError):
                events = None  # the collector falls back to RestartCount alone
        starts = None
        if restarts_since is not None and events is not None:
            starts = _container_starts(events, since=restarts_since.timestamp() + offset)
        # The events since the last pass are all there when the buffer was not full, or
        # still reaches back before the last pass.
        trusted = events is not None and (
            len(events) < ENGINE_EVENTS_BUFFER or _event_time(events[0]) < previous_read
        )
        changed = _inspection_changes(events or [], since=previous_read)
        summaries = api.containers(all=True)
        listed_at = time.time() + offset
        local = kernel_figures and engine.base_url.startswith("unix://")
        attrs_for = {
            s["Id"]: kept_containers[s["Id"]]
            for s in summaries
            if trusted and _still_true(kept_containers.get(s["Id"]), s, changed, listed_at)
        }
        figures: dict[str, ContainerFigures] = {}
        for s in summaries:
            if s["Id"] in attrs_for:
                found = _container_figures(api, s, local, attrs_for[s["Id"]], ask_engine=False)
                if found is not None:
                    figures[s["Id"]] = found
        remaining = [s for s in summaries if s["Id"] not in figures]
        # A kept container that runs but whose main process the kernel did not answer for
        # (a restart whose event and listing change were both missed) is inspected again,
        # unless the kernel answered for none of them: then its files are not readable from
        # here (a worker in a container of its own), and the engine's stats are asked instead.
        unanswered = {s["Id"] for s in remaining if s["Id"] in attrs_for}
        kept_running = {i for i, a in attrs_for.items() if (a.get("State") or {}).get("Running")}
        kernel_reads = local and (len(kept_running) > len(unanswered) or not kept_running)
        inspect_again = unanswered if kernel_reads else set()
        inspected: dict[str, dict] = {}
        if remaining:

            def ask(summary: dict) -> ContainerFigures:
                attrs = None if summary["Id"] in inspect_again else attrs_for.get(summary["Id"])
                if attrs is None:
                    attrs = api.inspect_container(summary["Id"])
                    inspected[summary["Id"]] = _kept_inspection(attrs, engine_now)
                return _container_figures(api, summary, kernel_reads, attrs)

            with ThreadPoolExecutor(
                max_workers=max(1, min(max_workers, len(remaining))),
                thread_name_prefix="docker-figures",
            ) as pool:
                futures = {s["Id"]: pool.submit(ask, s) for s in remaining}
                for container_id, future in futures.items():
                    try:
                        figures[container_id] = future.result()
                    except docker.errors.NotFound:
                        continue  # removed between the listing and the inspection
    containers = [figures[s["Id"]] for s in summaries if s["Id"] in figures]
    if starts is not None:
        containers = [
            replace(
                c,
                restarts_recent=_restarts_since(
                    c, starts, restarts_since + timedelta(seconds=offset)
                ),
            )
            for c in containers
        ]
    data_root = info.get("DockerRootDir") or ""
    disk = None
    # The data root's free space is only visible from the same host (a local socket).
    if engine.base_url.startswith("unix://") and data_root and os.path.isdir(data_root):
        usage = shutil.disk_usage(data_root)
        disk = (usage.total, usage.free)
    listed = {s["Id"] for s in summaries}
    return EngineFigures(
        containers=containers,
        memory_total_bytes=int(info.get("MemTotal") or 0),
        cpus=int(info.get("NCPU") or 1),
        data_root=data_root,
        data_root_disk=disk,
        inspections={
            "read_at": engine_now,
            "containers": {
                **{k: v for k, v in attrs_for.items() if k in listed},
                **{k: v for k, v in inspected.items() if k in listed},
            },
        },
        inspected=frozenset(inspected),
    )


def engine_info_and_events(engine: DockerEngine, *, since_minutes: int = 60) -> dict:
    """The engine's own facts and its recent events (die, oom, kill, restart, health…): what
    the runbook's "Review Docker daemon logs" looks for, read through the engine's API."""
    import time

    until = int(time.time()) + 1  # include events of the current second
    with client(engine) as docker_client:
        info = docker_client.info()
        events = _read_events(docker_client.api, since=until - since_minutes * 60, until=until)
    return {
        "server_version": info.get("ServerVersion"),
        "containers_running": info.get("ContainersRunning"),
        "containers_stopped": info.get("ContainersStopped"),
        "containers_paused": info.get("ContainersPaused"),
        "memory_bytes": info.get("MemTotal"),
        "cpus": info.get("NCPU"),
        "storage_driver": info.get("Driver"),
        "warnings": info.get("Warnings") or [],
        "events": [
            {
                "time": event.get("time"),
                "type": event.get("Type"),
                "action": event.get("Action"),
                "actor": ((event.get("Actor") or {}).get("Attributes") or {}).get("name")
                or (event.get("Actor") or {}).get("ID", "")[:12],
            }
            for event in events
        ],
    }
