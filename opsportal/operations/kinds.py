"""Every kind of operation: what it acts on, whether it changes anything, who may run it,
how long it may take and which parameters it accepts (validated before a row is written).

Plain data, so models, services and the admin can all read it without import cycles.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class TargetType:
    CONTAINER = "container"  # a system that runs in a container, or an engine + "container"
    ENGINE = "engine"  # a Docker engine, or a system that runs on one
    POSTGRES = "postgres"
    REDIS = "redis"
    HTTP = "http"


@dataclass(frozen=True)
class Param:
    """One parameter of an operation kind, typed: the run form shows it as a field of its
    type (number, choice, text, checkbox) with `default` filled in, and clean_params checks
    it before a row is written."""

    type: type
    default: object = None
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None
    # values, or (value, label) pairs
    choices: tuple = ()
    help: str = ""
    label: str = ""

    @property
    def choice_values(self) -> tuple:
        return tuple(c[0] if isinstance(c, tuple) else c for c in self.choices)

    @property
    def choice_pairs(self) -> list[tuple[object, str]]:
        return [c if isinstance(c, tuple) else (c, str(c)) for c in self.choices]


@dataclass(frozen=True)
class KindSpec:
    label: str
    target: str
    changing: bool = False
    time_limit_seconds: int = 60
    params: dict[str, Param] = field(default_factory=dict)
    group: str = ""
    # Parameters that narrow what a changing kind acts on (one application's connections
    # instead of all): an approval policy may exempt a narrowed request.
    narrowing: tuple[str, ...] = ()

    @property
    def permission(self) -> str:
        return f"run_{self._key}"

    @property
    def permission_label(self) -> str:
        return f"Can run operation: {self.label}"

    _key: str = ""


_CONTAINER = {
    "container": Param(str, label="Container", help="Container name, when the target is an engine.")
}
_PIDS = Param(
    list,
    default=[],
    label="Backend PIDs",
    help="From “Long-running queries”; empty: every query running longer than below.",
)
_MIN_SECONDS = Param(
    float,
    minimum=0,
    maximum=86400 * 7,
    label="Running for more than (s)",
    help="Without PIDs: every query of this database running longer (never the portal's own).",
)

_SPECS: dict[str, KindSpec] = {
    # Containers (runbook: "Check container logs", "Monitor resource usage", "Restart …")
    "container_list": KindSpec(
        "List containers",
        TargetType.ENGINE,
        params={"name_contains": Param(str, default="")},
        group="Containers",
    ),
    "container_inspect": KindSpec("Inspect container", TargetType.CONTAINER, params=_CONTAINER),
    "container_logs": KindSpec(
        "Container logs",
        TargetType.CONTAINER,
        params={
            **_CONTAINER,
            "lines": Param(int, default=200, minimum=1, maximum=10_000, label="Last lines"),
            "since_minutes": Param(
                int, minimum=1, maximum=60 * 24 * 30, label="Since (minutes ago)"
            ),
        },
    ),
    "container_stats": KindSpec(
        "Container resource usage", TargetType.CONTAINER, params=_CONTAINER
    ),
    "container_restart": KindSpec(
        "Restart container",
        TargetType.CONTAINER,
        changing=True,
        time_limit_seconds=180,
        params={
            **_CONTAINER,
            "timeout_seconds": Param(
                int, default=10, minimum=0, maximum=120, label="Stop timeout (s)"
            ),
        },
    ),
    "container_stop": KindSpec(
        "Stop container",
        TargetType.CONTAINER,
        changing=True,
        time_limit_seconds=180,
        params={
            **_CONTAINER,
            "timeout_seconds": Param(
                int, default=10, minimum=0, maximum=120, label="Stop timeout (s)"
            ),
        },
    ),
    "container_start": KindSpec(
        "Start container", TargetType.CONTAINER, changing=True, params=_CONTAINER
    ),
    "service_scale": KindSpec(
        "Scale service",
        TargetType.CONTAINER,
        changing=True,
        time_limit_seconds=300,
        params={
            **_CONTAINER,
            "replicas": Param(int, required=True, minimum=0, maximum=50),
            "swarm_service": Param(str, help="Scale this Swarm service instead of Compose's."),
        },
    ),
    "container_update_limits": KindSpec(
        "Change resource limits",
        TargetType.CONTAINER,
        changing=True,
        params={
            **_CONTAINER,
            "memory_mb": Param(int, minimum=6, maximum=1_048_576, label="Memory limit (MiB)"),
            "cpus": Param(float, minimum=0.01, maximum=1024, label="CPU limit (CPUs)"),
        },
    ),
    "engine_events": KindSpec(
        "Docker engine info and recent events",
        TargetType.ENGINE,
        params={"since_minutes": Param(int, default=60, minimum=1, maximum=60 * 24 * 7)},
    ),
    # Database (runbook: "Check connection pool status", "Kill long-running queries", …)
    "db_connections": KindSpec("Connection summary", TargetType.POSTGRES),
    "db_long_queries": KindSpec(
        "Long-running queries",
        TargetType.POSTGRES,
        params={
            "min_seconds": Param(
                float, default=30, minimum=0, maximum=86400 * 7, label="Running for more than (s)"
            )
        },
    ),
    "db_cancel_queries": KindSpec(
        "Cancel queries",
        TargetType.POSTGRES,
        changing=True,
        params={
            "pids": _PIDS,
            "min_seconds": _MIN_SECONDS,
        },
    ),
    "db_terminate_queries": KindSpec(
        "Terminate queries",
        TargetType.POSTGRES,
        changing=True,
        params={
            "pids": _PIDS,
            "min_seconds": _MIN_SECONDS,
        },
    ),
    # "Restart database connections": a leaking pool's connections are idle, but only just
    # (it opens new ones as fast as it loses track of them), so the idle time filters
    # nothing by default; which application or user they belong to is what tells them apart.
    "db_terminate_idle": KindSpec(
        "Terminate idle connections",
        TargetType.POSTGRES,
        changing=True,
        narrowing=("application_name", "user"),
        params={
            "application_name": Param(
                str,
                default="",
                label="Application",
                help="Only connections of this application_name (see the connection summary's "
                "“By application”); empty: every application's.",
            ),
            "user": Param(
                str,
                default="",
                label="Database user",
                help="Only connections of this database user; empty: every user's.",
            ),
            "state": Param(
                str,
                default="any",
                label="State",
                choices=(
                    ("any", "idle or idle in a transaction"),
                    ("idle", "idle (no open transaction)"),
                    ("idle in transaction", "idle in a transaction (left open)"),
                ),
            ),
            "idle_seconds": Param(
                float,
                default=0,
                minimum=0,
                maximum=86400 * 30,
                label="Idle for at least (s)",
                help="0: however briefly. The portal's own connections are never terminated.",
            ),
        },
    ),
    "db_statistics": KindSpec("Database size and activity", TargetType.POSTGRES),
    "db_container_logs": KindSpec(
        "Database container logs",
        TargetType.POSTGRES,
        params={"lines": Param(int, default=200, minimum=1, maximum=10_000)},
    ),
    # Cache (runbook: "Check Redis cache hit rates", "Clear cache if needed")
    "cache_statistics": KindSpec("Cache hit rate and memory", TargetType.REDIS),
    "cache_clear": KindSpec(
        "Clear cache",
        TargetType.REDIS,
        changing=True,
        time_limit_seconds=300,
        params={"pattern": Param(str, default="", help="Keys matching this; empty: all keys.")},
    ),
    # API (runbook: "API response time (target: <200ms P95)")
    "api_probe": KindSpec(
        "Probe the API",
        TargetType.HTTP,
        time_limit_seconds=300,
        params={
            "count": Param(int, default=20, minimum=1, maximum=500),
            "interval_ms": Param(int, default=0, minimum=0, maximum=10_000),
        },
    ),
    # Security incident response ("Isolate affected systems", "Preserve evidence")
    "container_isolate": KindSpec(
        "Isolate container",
        TargetType.CONTAINER,
        changing=True,
        time_limit_seconds=120,
        params={
            **_CONTAINER,
            "method": Param(str, default="auto", choices=("auto", "disconnect", "stop", "pause")),
        },
    ),
    "evidence_preserve": KindSpec(
        "Preserve evidence",
        TargetType.CONTAINER,
        time_limit_seconds=1800,
        params={
            **_CONTAINER,
            "log_lines": Param(int, default=10_000, minimum=1, maximum=1_000_000),
            "export_filesystem": Param(bool, default=False),
        },
    ),
}

KINDS: dict[str, KindSpec] = {}
for _key, _spec in _SPECS.items():
    object.__setattr__(_spec, "_key", _key)
    KINDS[_key] = _spec


class InvalidParameters(ValueError):
    """The parameters of an operation are unusable; the message says which and why, and
    `param` names the parameter when it is one's fault."""

    def __init__(self, message: str, param: str = ""):
        super().__init__(message)
        self.param = param


def clean_params(kind: str, params: dict | None) -> dict:
    """The parameters with defaults filled in and types checked, or InvalidParameters."""
    spec = KINDS.get(kind)
    if spec is None:
        raise InvalidParameters(f"Unknown operation kind {kind!r}.")
    params = dict(params or {})
    unknown = sorted(set(params) - set(spec.params))
    if unknown:
        raise InvalidParameters(
            f"{spec.label} does not take {', '.join(unknown)} "
            f"(it takes: {', '.join(spec.params) or 'no parameters'})."
        )
    cleaned: dict = {}
    for name, param in spec.params.items():
        value = params.get(name)
        if value is None or value == "":
            if param.required:
                raise InvalidParameters(f"{spec.label} needs {name}.", name)
            if param.default is not None:
                cleaned[name] = param.default
            continue
        cleaned[name] = _coerce(spec, name, param, value)
    return cleaned


def check_stored_params(kind: str, params: object) -> None:
    """A runbook step's stored parameters, before the run fills in what is left: the kind
    exists, they are an object of its parameter names, and every value given fits its spec
    (required ones may still be missing). InvalidParameters says what is wrong."""
    spec = KINDS.get(kind)
    if spec is None:
        raise InvalidParameters(
            f"Unknown operation kind {kind[:60]!r}; one of: {', '.join(sorted(KINDS))}."
        )
    if not isinstance(params, dict):
        raise InvalidParameters("The parameters must be a JSON object.")
    unknown = sorted(set(params) - set(spec.params))
    if unknown:
        raise InvalidParameters(
            f"{spec.label} does not take {', '.join(n[:40] for n in unknown[:5])} "
            f"(it takes: {', '.join(spec.params) or 'no parameters'})."
        )
    for name, value in params.items():
        param = spec.params[name]
        if isinstance(value, dict) or (isinstance(value, list) and param.type is not list):
            raise InvalidParameters(f"{name} must be a single value, not a list or object.", name)
        if value is not None and value != "":
            _coerce(spec, name, param, value)


# Bounds on free-form parameters: process ids fit PostgreSQL's int, names its identifiers
# (63 bytes; 255 leaves room for container and service names and key patterns).
MAX_LIST_ITEMS = 100
MAX_LIST_NUMBER = 2**31 - 1
MAX_TEXT_LENGTH = 255


def _coerce(spec: KindSpec, name: str, param: Param, value: object) -> object:
    try:
        if param.type is bool:
            if isinstance(value, str):
                value = value.strip().lower() in {"1", "true", "yes", "on"}
            value = bool(value)
        elif param.type is list:
            if isinstance(value, str):
                value = [v for v in value.replace(",", " ").split() if v]
            value = [int(v) for v in value]
        elif param.type is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            value = int(value)
        else:
            value = param.type(value)
    except (TypeError, ValueError):
        kind_name = {int: "a whole number", float: "a number", list: "a list of numbers"}.get(
            param.type, param.type.__name__
        )
        raise InvalidParameters(f"{name} must be {kind_name}, got {value!r}.", name) from None
    if param.minimum is not None and isinstance(value, int | float) and value < param.minimum:
        raise InvalidParameters(f"{name} must be at least {param.minimum:g}, got {value:g}.", name)
    if param.maximum is not None and isinstance(value, int | float) and value > param.maximum:
        raise InvalidParameters(f"{name} must be at most {param.maximum:g}, got {value:g}.", name)
    if param.choices and value not in param.choice_values:
        raise InvalidParameters(
            f"{name} must be one of {', '.join(map(str, param.choice_values))}, got {value!r}.",
            name,
        )
    if param.type is list and any(v <= 0 or v > MAX_LIST_NUMBER for v in value):
        raise InvalidParameters(f"{name} must list positive numbers, got {value!r}.", name)
    if param.type is list and len(value) > MAX_LIST_ITEMS:
        raise InvalidParameters(f"{name} lists at most {MAX_LIST_ITEMS} numbers.", name)
    if param.type is str and len(value) > MAX_TEXT_LENGTH:
        raise InvalidParameters(f"{name} is at most {MAX_TEXT_LENGTH} characters long.", name)
    return value
