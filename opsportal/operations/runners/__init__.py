"""What each kind of operation does: resolve the target, call the adapters, and describe the
outcome in words for the operator (output) and as data (result).

Runners raise AdapterError (the system's failure, in words) or InvalidTarget; the service
turns either into a failed operation with that message.

One module per thing a runner acts on (CONVENTIONS.md, "Modules by concept"):
`containers` (containers, services, the Docker engine), `postgres`, `redis`, `api` (HTTP
endpoints) and `security` (isolation, evidence); `targets` resolves what a target means and
`outcome` is what every runner returns. A new kind's `run_<kind>` goes in the module for
what it acts on; `RUNNERS` below finds it there. Everything callers used from the former
`runners.py` is re-exported here.
"""

from __future__ import annotations

from collections.abc import Callable

from opsportal.operations.kinds import KINDS
from opsportal.operations.runners import api, containers, postgres, redis, security
from opsportal.operations.runners.api import INCIDENT_P95_MS, run_api_probe
from opsportal.operations.runners.containers import (
    run_container_inspect,
    run_container_list,
    run_container_logs,
    run_container_restart,
    run_container_start,
    run_container_stats,
    run_container_stop,
    run_container_update_limits,
    run_engine_events,
    run_service_scale,
)
from opsportal.operations.runners.outcome import Outcome
from opsportal.operations.runners.postgres import (
    run_db_cancel_queries,
    run_db_connections,
    run_db_container_logs,
    run_db_long_queries,
    run_db_statistics,
    run_db_terminate_idle,
    run_db_terminate_queries,
)
from opsportal.operations.runners.redis import run_cache_clear, run_cache_statistics
from opsportal.operations.runners.security import (
    EVIDENCE_DIRECTORY_MODE,
    EVIDENCE_FILE_MODE,
    evidence_directory,
    evidence_directory_create,
    evidence_file_create,
    run_container_isolate,
    run_evidence_preserve,
)
from opsportal.operations.runners.targets import (
    InvalidTarget,
    check_target,
    resolve_container,
    resolve_engine,
)

_RUNNER_MODULES = (containers, postgres, redis, api, security)


def _runner(kind: str) -> Callable[..., Outcome]:
    """`run_<kind>` from the module for what the kind acts on."""
    for module in _RUNNER_MODULES:
        runner = getattr(module, f"run_{kind}", None)
        if runner is not None:
            return runner
    raise KeyError(f"run_{kind}")


# The registry the service dispatches on: every kind in KINDS has its runner.
RUNNERS: dict[str, Callable[..., Outcome]] = {kind: _runner(kind) for kind in KINDS}

__all__ = [
    "EVIDENCE_DIRECTORY_MODE",
    "EVIDENCE_FILE_MODE",
    "INCIDENT_P95_MS",
    "RUNNERS",
    "InvalidTarget",
    "Outcome",
    "check_target",
    "evidence_directory",
    "evidence_directory_create",
    "evidence_file_create",
    "resolve_container",
    "resolve_engine",
    "run_api_probe",
    "run_cache_clear",
    "run_cache_statistics",
    "run_container_inspect",
    "run_container_isolate",
    "run_container_list",
    "run_container_logs",
    "run_container_restart",
    "run_container_start",
    "run_container_stats",
    "run_container_stop",
    "run_container_update_limits",
    "run_db_cancel_queries",
    "run_db_connections",
    "run_db_container_logs",
    "run_db_long_queries",
    "run_db_statistics",
    "run_db_terminate_idle",
    "run_db_terminate_queries",
    "run_engine_events",
    "run_evidence_preserve",
    "run_service_scale",
]
