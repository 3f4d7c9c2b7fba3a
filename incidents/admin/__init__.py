"""Incidents, runbooks and alerts in the admin: the workflow UI responders use.

The incident page's buttons (status transitions, "Mark mitigated", escalate, attach a
runbook, note, tick or run a checklist step, evidence download) are get_urls() views that
call incidents.services; the rules behind them live there, not here.

One module per concept. Admin autodiscovery imports this package only, so it imports each
module here: that import is what registers their ModelAdmins.

- incidents: the changelist, the opening form and the incident page
- workflow: the incident page's button views (mixed into IncidentAdmin)
- display: the changelist's row estimate and per-row shortcuts, the timeline rows, elapsed
  times
- runbooks: runbooks and their steps
- alerts: alerts received (read-only)
- escalation: escalation policies with their steps, and the escalations that ran (read-only)
- public: incidents published on the status page and their public updates
"""

from incidents.admin.alerts import AlertAdmin
from incidents.admin.display import (
    ESTIMATED_COUNT_ABOVE,
    IncidentPaginator,
    elapsed_text,
    timeline_rows,
)
from incidents.admin.escalation import EscalationAdmin, EscalationPolicyAdmin
from incidents.admin.incidents import ActionItemInline, IncidentAdmin
from incidents.admin.public import PublicIncidentAdmin
from incidents.admin.runbooks import RunbookAdmin, RunbookStepInline
from incidents.admin.workflow import IncidentWorkflowViews

__all__ = [
    "ESTIMATED_COUNT_ABOVE",
    "ActionItemInline",
    "AlertAdmin",
    "EscalationAdmin",
    "EscalationPolicyAdmin",
    "IncidentAdmin",
    "IncidentPaginator",
    "IncidentWorkflowViews",
    "PublicIncidentAdmin",
    "RunbookAdmin",
    "RunbookStepInline",
    "elapsed_text",
    "timeline_rows",
]
