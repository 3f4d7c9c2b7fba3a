"""Adapter for Docker engines (the Docker SDK), with timeouts and operator-readable errors.

Grouped by what the engine can do:
  connection   how the portal reaches an engine (unix, tcp+TLS, ssh), timeouts, error translation
  engine       the engine itself: ping and its ID, info and events, monitoring's figures, disk
  containers   one container: address, list, inspect, logs, stats, restart/stop/start, limits,
               isolate
  services     scaling a Compose or Swarm service
  exec_export  exec with streamed output, filesystem diff and export (evidence)

Callers use the package (`from opsportal.systems.adapters import docker_engine`,
`docker_engine.container_restart(...)`); the names below are that interface. A function here
looks its helpers up in its own module (`containers.py` calls `connection.client` as
`client`), so a test that replaces one patches it in the module that uses it
(`docker_engine.containers.client`); patching this package's name changes nothing.
"""

from opsportal.systems.adapters.docker_engine.connection import client, translate_error
from opsportal.systems.adapters.docker_engine.containers import (
    container_address,
    container_inspect,
    container_isolate,
    container_logs,
    container_restart,
    container_start,
    container_stats,
    container_stop,
    container_update_limits,
    containers_list,
)
from opsportal.systems.adapters.docker_engine.engine import (
    INSPECTION_MAX_AGE_SECONDS,
    ContainerFigures,
    EngineFigures,
    engine_figures,
    engine_info_and_events,
    ping,
)
from opsportal.systems.adapters.docker_engine.exec_export import (
    container_diff,
    container_export,
    exec_stream,
)
from opsportal.systems.adapters.docker_engine.services import (
    compose_service_scale,
    containers_touched,
    swarm_service_replicas,
    swarm_service_scale,
)

__all__ = [
    "INSPECTION_MAX_AGE_SECONDS",
    "ContainerFigures",
    "EngineFigures",
    "client",
    "compose_service_scale",
    "container_address",
    "container_diff",
    "container_export",
    "container_inspect",
    "container_isolate",
    "container_logs",
    "container_restart",
    "container_start",
    "container_stats",
    "container_stop",
    "container_update_limits",
    "containers_list",
    "containers_touched",
    "engine_figures",
    "engine_info_and_events",
    "exec_stream",
    "ping",
    "swarm_service_replicas",
    "swarm_service_scale",
    "translate_error",
]
