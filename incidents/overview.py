"""The overview's incident panel: open incidents (the user's teams' first, then the newest),
counts by severity, and each firing alert's link to its incident's next runbook fix."""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlencode

from django.db.models import Count, Exists, OuterRef, Value
from django.urls import reverse

from incidents.models import ACTIVE_STATUSES, Incident, Severity
from incidents.selectors import next_operation_steps
from opsportal.people.models import Team

OVERVIEW_MAX_INCIDENTS = 10


def overview_incidents(*, now: dt.datetime, user, systems, firing) -> dict:
    # The user's teams' incidents first, then the newest: a long list stays readable, and
    # the rest are one link away (the incident list filtered to open ones).
    mine = (
        Exists(Team.objects.filter(pk=OuterRef("team_id"), members=user))
        if getattr(user, "pk", None)
        else Value(False)
    )
    open_incidents = list(
        Incident.objects.filter(status__in=ACTIVE_STATUSES)
        .select_related("team")
        .annotate(mine=mine)
        .order_by("-mine", "-detected_at", "-id")[:OVERVIEW_MAX_INCIDENTS]
    )
    counts = dict(
        Incident.objects.filter(status__in=ACTIVE_STATUSES)
        .values("severity")
        .annotate(n=Count("pk"))
        .values_list("severity", "n")
    )
    by_severity = [
        (value, label.split(" ")[0], counts.get(value, 0)) for value, label in Severity.choices
    ]
    # Each firing alert links to its incident's runbook step, the alert's system and
    # container filled in (one query for every alert's incident).
    steps = next_operation_steps(incident_ids=[s.incident_id for s in firing if s.incident_id])
    for state in firing:
        step = steps.get(state.incident_id)
        state.run_step = step
        state.run_url = (
            reverse("admin:incidents_incident_step_run", args=[state.incident_id, step.pk])
            + "?"
            + urlencode({"target": state.system_id or "", "container": state.subject})
            if step is not None
            else ""
        )
    total = sum(counts.values())
    return {
        "open_incidents": open_incidents,
        "incidents_more": max(total - len(open_incidents), 0),
        "incidents_open_url": reverse("admin:incidents_incident_changelist")
        + "?"
        + urlencode({"status__in": ",".join(ACTIVE_STATUSES)}),
        "incidents_by_severity": by_severity,
        "incidents_open_total": total,
        "incident_admin_url": reverse("admin:incidents_incident_changelist"),
    }
