"""Everything the runbook says should exist on a new portal, created once.

Each loader only creates what is missing, so running it again changes nothing and never
overwrites what an operator edited. The shared layer's loaders are listed here; each domain
app adds its own from its AppConfig.ready() with `defaults_loader_register` (the shared
layer imports no domain app).
"""

from collections.abc import Callable

from opsportal.access import groups_load_defaults
from opsportal.approvals.services import approvals_schedule_load_defaults
from opsportal.audit.services import audit_load_defaults
from opsportal.health.services import health_load_defaults
from opsportal.monitoring.services import monitoring_load_defaults
from opsportal.operations.services import operations_load_defaults
from opsportal.people.services import people_load_defaults
from opsportal.statuspage.services import statuspage_load_defaults

# (order, loader): lower runs first. The shared layer's come first (groups before the
# people who join them); domain apps register theirs between 100 and 199.
_loaders: dict[str, tuple[int, Callable[[], None]]] = {
    "groups": (10, groups_load_defaults),
    "people": (20, people_load_defaults),
    "health": (30, health_load_defaults),
    "audit": (40, audit_load_defaults),
    "operations": (60, operations_load_defaults),
    "approvals": (62, approvals_schedule_load_defaults),
    "monitoring": (70, monitoring_load_defaults),
    "statuspage": (80, statuspage_load_defaults),
}


def defaults_loader_register(name: str, loader: Callable[[], None], *, order: int) -> None:
    """Have `load_defaults` run `loader` (once per name) in `order`."""
    _loaders.setdefault(name, (order, loader))


def load_defaults() -> None:
    for _order, loader in sorted(_loaders.values(), key=lambda item: item[0]):
        loader()
