"""Everything the runbook says should exist on a new portal, created once.

Each loader only creates what is missing, so running it again changes nothing and never
overwrites what an operator edited.
"""

from backups.services import backups_load_defaults
from incidents.services import incidents_load_defaults
from maintenance.services import maintenance_load_defaults
from opsportal.access import groups_load_defaults
from opsportal.audit.services import audit_load_defaults
from opsportal.health.services import health_load_defaults
from opsportal.monitoring.services import monitoring_load_defaults
from opsportal.operations.services import operations_load_defaults
from opsportal.people.services import people_load_defaults


def load_defaults() -> None:
    groups_load_defaults()
    people_load_defaults()
    health_load_defaults()
    audit_load_defaults()
    incidents_load_defaults()
    operations_load_defaults()
    monitoring_load_defaults()
    maintenance_load_defaults()
    backups_load_defaults()
