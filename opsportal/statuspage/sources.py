"""What domain apps contribute to the public status page, through a registry the status page
owns (the shared layer imports no domain app): incident handling plugs in the public
incidents and their public updates, maintenance the windows marked public. Each source
hands back these plain records, already stripped to what may be shown publicly."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Protocol


class UpdateStatus:
    INVESTIGATING = "investigating"
    IDENTIFIED = "identified"
    MONITORING = "monitoring"
    RESOLVED = "resolved"
    CHOICES = [
        (INVESTIGATING, "Investigating"),
        (IDENTIFIED, "Identified"),
        (MONITORING, "Monitoring"),
        (RESOLVED, "Resolved"),
    ]
    LABELS = dict(CHOICES)


@dataclass(frozen=True)
class PublicUpdate:
    at: dt.datetime
    status: str  # UpdateStatus
    message: str

    @property
    def status_label(self) -> str:
        return UpdateStatus.LABELS.get(self.status, self.status)


@dataclass(frozen=True)
class PublicIncident:
    id: int
    title: str
    started_at: dt.datetime
    resolved_at: dt.datetime | None
    component_ids: tuple[int, ...] = ()
    # A state the incident sets on its components while it is unresolved ("" = derived).
    component_state: str = ""
    updates: tuple[PublicUpdate, ...] = field(default=())  # newest first

    @property
    def status(self) -> str:
        return self.updates[0].status if self.updates else UpdateStatus.INVESTIGATING

    @property
    def status_label(self) -> str:
        return UpdateStatus.LABELS[self.status]

    @property
    def active(self) -> bool:
        return self.resolved_at is None

    @property
    def updated_at(self) -> dt.datetime:
        return self.updates[0].at if self.updates else self.started_at


@dataclass(frozen=True)
class PublicWindow:
    id: int
    title: str
    starts_at: dt.datetime
    ends_at: dt.datetime
    status: str  # "scheduled", "in_progress", "completed", "cancelled"
    impact: str
    component_ids: tuple[int, ...]
    updated_at: dt.datetime
    sequence: int = 0

    STATUS_LABELS = {
        "scheduled": "Scheduled",
        "in_progress": "In progress",
        "completed": "Completed",
        "cancelled": "Cancelled",
    }

    @property
    def status_label(self) -> str:
        return self.STATUS_LABELS.get(self.status, self.status)


class PublicSource(Protocol):
    """Any of these may be left out by a source that has nothing of that kind."""

    def incidents(self, *, since: dt.datetime | None) -> list[PublicIncident]:
        """Public incidents unresolved now or started/resolved since `since`."""

    def incident(self, *, pk: int) -> PublicIncident | None: ...

    def windows(self, *, start: dt.datetime, end: dt.datetime) -> list[PublicWindow]:
        """Public windows overlapping [start, end), cancelled ones included."""


_sources: dict[str, object] = {}


def public_source_register(name: str, source: object) -> None:
    """Plug a domain app's public records in (from its AppConfig.ready())."""
    _sources[name] = source


def public_incidents(*, since: dt.datetime | None = None) -> list[PublicIncident]:
    found: list[PublicIncident] = []
    for source in _sources.values():
        if hasattr(source, "incidents"):
            found += source.incidents(since=since)
    return sorted(found, key=lambda i: i.started_at, reverse=True)


def public_incident(*, pk: int) -> PublicIncident | None:
    for source in _sources.values():
        if hasattr(source, "incident") and (found := source.incident(pk=pk)) is not None:
            return found
    return None


def public_windows(*, start: dt.datetime, end: dt.datetime) -> list[PublicWindow]:
    found: list[PublicWindow] = []
    for source in _sources.values():
        if hasattr(source, "windows"):
            found += source.windows(start=start, end=end)
    return sorted(found, key=lambda w: w.starts_at)
