"""Incidents (the runbook's "Incident Response"), their timelines and checklists, the
runbooks they follow, the alerts that open them, what the status page says and who is
paged until someone answers: one module per part, every model importable from here."""

from incidents.models.alerts import (
    Alert,
    AlertStatus,
)
from incidents.models.escalation import (
    AcknowledgeLink,
    Escalation,
    EscalationPage,
    EscalationPolicy,
    EscalationStatus,
    EscalationStep,
    EscalationTarget,
    PageStatus,
)
from incidents.models.incident import (
    ACTIVE_STATUSES,
    REVIEW_REQUIRED,
    ActionItem,
    Category,
    Incident,
    Severity,
    Source,
    Status,
    TimelineEvent,
    TimelineKind,
)
from incidents.models.public import (
    PublicIncident,
    PublicUpdate,
)
from incidents.models.runbooks import (
    IncidentStep,
    Phase,
    Runbook,
    RunbookStep,
)

__all__ = [
    "ACTIVE_STATUSES",
    "REVIEW_REQUIRED",
    "AcknowledgeLink",
    "ActionItem",
    "Alert",
    "AlertStatus",
    "Category",
    "Escalation",
    "EscalationPage",
    "EscalationPolicy",
    "EscalationStatus",
    "EscalationStep",
    "EscalationTarget",
    "Incident",
    "IncidentStep",
    "PageStatus",
    "Phase",
    "PublicIncident",
    "PublicUpdate",
    "Runbook",
    "RunbookStep",
    "Severity",
    "Source",
    "Status",
    "TimelineEvent",
    "TimelineKind",
]
