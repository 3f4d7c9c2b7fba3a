"""Telling the database admins that a backup, its verification, its drill or its schedule
failed: through an incident when the plan asks for one, otherwise directly."""

from __future__ import annotations

from backups.models import BackupPlan
from backups.services._common import logger
from opsportal.people.models import Responsibility
from opsportal.people.services import notify


def _alert_database_admins(
    *,
    plan: BackupPlan | None,
    about: object,
    subject: str,
    body: str,
    open_incident: bool = True,
) -> None:
    """Page the database admins, through an incident when the plan asks for one (its
    routing pages the DBAs and the on-call engineer once), otherwise directly."""
    if open_incident and plan is not None and plan.open_incident_on_failure:
        try:
            from incidents.services import incident_open

            incident_open(
                title=subject,
                severity="sev2",
                category="database",
                symptoms=body,
                affected_systems=[plan.database],
                source="schedule",
            )
            return
        except Exception:
            # The DBAs must hear of it even if the incident could not be opened.
            logger.exception("Could not open an incident for %r", subject)
    notify(responsibility=Responsibility.DATABASE, subject=subject, body=body, about=about)
