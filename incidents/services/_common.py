"""What the incident services share: the refusal, the timeline entry and audit record each
of them writes, checking a choice, finding the systems an alert names, and the severity
order (escalation only goes up; an alert that fires at a higher severity escalates)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.utils import timezone

from incidents.models import Incident, Severity, Source, TimelineEvent
from opsportal.actors import acting_user
from opsportal.audit.models import AuditAction, AuditOutcome
from opsportal.audit.services import audit_record
from opsportal.operations.models import Operation
from opsportal.refusals import ServiceRefused
from opsportal.systems.models import System

# One logger for all of the app's services, named as before they were split into modules,
# so log lines and any logging configuration for "incidents.services" stay the same.
logger = logging.getLogger("incidents.services")


class IncidentRefused(ServiceRefused):
    """The request cannot be carried out; `message` says why, for the operator."""


# --- timeline ---------------------------------------------------------------------------


def timeline_add(
    *,
    incident: Incident,
    kind: str,
    message: str,
    actor=None,
    source: str = Source.PERSON,
    output: str = "",
    operation: Operation | None = None,
) -> TimelineEvent:
    return TimelineEvent.objects.create(
        incident=incident,
        at=timezone.now(),
        kind=kind,
        source=source,
        actor=acting_user(actor),
        message=message,
        output=output,
        operation=operation,
    )


def _audit(incident: Incident, message: str, actor=None, outcome=AuditOutcome.SUCCESS) -> None:
    audit_record(
        action=AuditAction.OPERATION,
        obj=incident,
        actor=acting_user(actor),
        outcome=outcome,
        message=message,
    )


def _resolve_systems(systems: Iterable) -> list[System]:
    """Systems given as instances, primary keys or names (alerts name them)."""
    found: list[System] = []
    names, ids = [], []
    for item in systems or ():
        if isinstance(item, System):
            found.append(item)
        elif isinstance(item, int):
            ids.append(item)
        elif item:
            names.append(str(item))
    if names or ids:
        from django.db.models import Q

        found += list(System.objects.filter(Q(name__in=names) | Q(pk__in=ids)))
    return list({s.pk: s for s in found}.values())


def _check_choice(value: str, choices, what: str) -> None:
    if value not in choices.values:
        raise IncidentRefused(
            f"Unknown {what} {value!r}; choose one of {', '.join(choices.values)}."
        )


_SEVERITY_RANK = {Severity.SEV1: 1, Severity.SEV2: 2, Severity.SEV3: 3, Severity.SEV4: 4}
