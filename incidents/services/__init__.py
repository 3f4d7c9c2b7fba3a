"""Every state change of an incident: opening (by a person or an alert), paging, the
lifecycle, the timeline, runbook checklists and the operations run from them.

Each writes a timeline event and an audit record; an illegal request raises
IncidentRefused with a message for the operator.

One module per concept, re-exported here so callers keep `from incidents import services`
and `from incidents.services import X`:

- lifecycle: opening an incident, notes, the status transitions (acknowledge, investigate,
  mitigate, "Mark mitigated", resolve, close, reopen), the post-incident review, escalation
- paging: who the routing pages for an incident, and the notifications sent
- runbooks: attaching a runbook as a checklist, ticking and running its steps, the result of
  a step's operation, the default playbooks
- alerts: receiving an alert (open, join, suppress, resolve) and handing over the alerts a
  maintenance window held once it ends
- escalation: escalation policies, the pages planned from them and sent when due (at
  most once, by their task or the sweeper), stopping when acknowledged or resolved
- acknowledge: what a page says and links to, the signed single-use Acknowledge links,
  the follow-ups once the incident is acknowledged or resolved
- postmortem: the post-incident review draft of a resolved incident (Markdown, the
  printable page's content) and committing it to the configuration repository
- _common: the refusal, the timeline entry and audit record every service writes
"""

from incidents.services._common import IncidentRefused, timeline_add
from incidents.services.acknowledge import (
    LinkRefused,
    acknowledge_link_check,
    acknowledge_link_create,
    incident_acknowledge_by_link,
    incident_followup_notify,
)
from incidents.services.alerts import alert_fingerprint, alert_receive, alerts_release_held
from incidents.services.escalation import (
    EscalationRefused,
    escalation_load_defaults,
    escalation_page_send,
    escalation_plan,
    escalation_policy_check,
    escalation_policy_for,
    escalation_start,
    escalation_stop,
    escalations_sweep,
)
from incidents.services.lifecycle import (
    MARK_MITIGATED_FROM,
    TRANSITIONS,
    incident_acknowledge,
    incident_add_note,
    incident_allowed_actions,
    incident_close,
    incident_durations,
    incident_escalate,
    incident_investigate,
    incident_mark_mitigated,
    incident_mark_mitigated_step,
    incident_mitigate,
    incident_open,
    incident_reopen,
    incident_resolve,
    incident_review_missing,
    incident_transition,
)
from incidents.services.paging import paging_responsibilities
from incidents.services.postmortem import (
    incident_postmortem,
    incident_postmortem_draft,
    incident_postmortem_file,
    postmortem_file_name,
)
from incidents.services.public import (
    IncidentsPublicSource,
    PublicIncidentRefused,
    incident_public_update_post,
    incident_publish,
)
from incidents.services.runbooks import (
    DEFAULT_RUNBOOKS,
    incident_attach_runbook,
    incident_operation_request,
    incident_step_can_run,
    incident_step_done,
    incident_step_run,
    incidents_load_defaults,
    on_operation_finished,
    step_run_permissions,
)

__all__ = [
    "DEFAULT_RUNBOOKS",
    "MARK_MITIGATED_FROM",
    "TRANSITIONS",
    "EscalationRefused",
    "IncidentRefused",
    "IncidentsPublicSource",
    "LinkRefused",
    "PublicIncidentRefused",
    "acknowledge_link_check",
    "acknowledge_link_create",
    "alert_fingerprint",
    "alert_receive",
    "alerts_release_held",
    "escalation_load_defaults",
    "escalation_page_send",
    "escalation_plan",
    "escalation_policy_check",
    "escalation_policy_for",
    "escalation_start",
    "escalation_stop",
    "escalations_sweep",
    "incident_acknowledge",
    "incident_acknowledge_by_link",
    "incident_add_note",
    "incident_allowed_actions",
    "incident_attach_runbook",
    "incident_close",
    "incident_durations",
    "incident_escalate",
    "incident_followup_notify",
    "incident_investigate",
    "incident_mark_mitigated",
    "incident_mark_mitigated_step",
    "incident_mitigate",
    "incident_open",
    "incident_operation_request",
    "incident_postmortem",
    "incident_postmortem_draft",
    "incident_postmortem_file",
    "incident_public_update_post",
    "incident_publish",
    "incident_reopen",
    "incident_resolve",
    "incident_review_missing",
    "incident_step_can_run",
    "incident_step_done",
    "incident_step_run",
    "incident_transition",
    "incidents_load_defaults",
    "on_operation_finished",
    "paging_responsibilities",
    "postmortem_file_name",
    "step_run_permissions",
    "timeline_add",
]
