"""incidents.services.lifecycle: opening an incident, the status transitions and their
audit records, the review a SEV1/SEV2 needs before it closes, escalation, the timeline."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from incidents.models import ActionItem, IncidentStep, Status, TimelineKind
from incidents.selectors import incident_checklist
from incidents.services import (
    TRANSITIONS,
    IncidentRefused,
    alert_receive,
    incident_acknowledge,
    incident_close,
    incident_escalate,
    incident_investigate,
    incident_mark_mitigated,
    incident_mark_mitigated_step,
    incident_mitigate,
    incident_open,
    incident_reopen,
    incident_resolve,
    incident_step_run,
    incident_transition,
)
from opsportal.access import groups_load_defaults
from opsportal.audit.models import AuditAction, AuditRecord
from opsportal.operations.models import Operation, OperationStatus
from opsportal.operations.tasks import execute_operation
from opsportal.people.models import Notification, Responsibility


def staff_in(role: str):
    user = get_user_model().objects.create_user(
        role.lower().replace(" ", "-"), password="role-pass-123", is_staff=True
    )
    user.groups.add(Group.objects.get(name=role))
    return user


def test_opening_writes_one_audit_record_and_later_edits_are_still_recorded(
    teams, engineer, http_endpoint
):
    incident = incident_open(
        title="checkout slow",
        severity="sev3",
        category="api",
        team=teams[Responsibility.DEVOPS],
        reporter=engineer,
        symptoms="p95 800 ms",
        affected_systems=[http_endpoint],
    )
    history = AuditRecord.objects.filter(
        object_type="incidents.incident", object_id=str(incident.pk)
    )
    # One record for the opening (no bare "created" or "affected systems added" beside it),
    # carrying who opened it and the values it was opened with.
    (opened,) = history
    assert opened.action == AuditAction.CREATE
    assert opened.actor_id == engineer.pk
    assert opened.message == "Opened SEV3 incident: checkout slow"
    assert opened.changes["title"] == [None, "checkout slow"]
    assert opened.changes["symptoms"] == [None, "p95 800 ms"]
    assert opened.changes["team"] == [None, str(teams[Responsibility.DEVOPS].pk)]
    assert opened.changes["affected_systems"] == [None, [http_endpoint.name]]
    assert [s.pk for s in incident.affected_systems.all()] == [http_endpoint.pk]

    # The model change history still records an edit made later (e.g. in the admin).
    incident.impact = "checkout conversions down 20%"
    incident.save()
    changed = history.filter(action=AuditAction.CHANGE).get()
    assert changed.changes == {"impact": ["", "checkout conversions down 20%"]}
    incident.affected_systems.clear()
    assert history.filter(action=AuditAction.CHANGE).count() == 2


def test_a_team_member_only_opens_incidents_for_their_own_team(teams, engineer):
    with pytest.raises(IncidentRefused, match="not a member of Security team"):
        incident_open(
            title="x",
            severity="sev3",
            category="other",
            team=teams[Responsibility.SECURITY],
            reporter=engineer,
        )


def test_lifecycle_sets_timestamps_and_refuses_illegal_moves(teams, engineer):
    incident = incident_open(title="slow API", severity="sev3", category="api", reporter=engineer)
    with pytest.raises(IncidentRefused, match="is open, so it cannot be closed"):
        incident_close(incident=incident, actor=engineer)
    incident_acknowledge(incident=incident, actor=engineer)
    assert incident.acknowledged_at and incident.commander == engineer
    with pytest.raises(IncidentRefused, match="cannot be acknowledged"):
        incident_acknowledge(incident=incident, actor=engineer)
    incident_investigate(incident=incident, actor=engineer)
    incident_mitigate(incident=incident, actor=engineer, note="restarted")
    incident_resolve(incident=incident, actor=engineer, resolution="cache cleared")
    assert incident.status == Status.RESOLVED and incident.resolution == "cache cleared"
    assert incident.time_to_resolve >= incident.time_to_acknowledge
    incident_close(incident=incident, actor=engineer)
    incident_reopen(incident=incident, actor=engineer, reason="back again")
    assert incident.status == Status.OPEN and incident.closed_at is None
    statuses = incident.timeline.filter(kind=TimelineKind.STATUS).values_list("message", flat=True)
    assert len(statuses) == 6
    assert "Closed → Open (reopened by erin): back again" in statuses


def test_sev1_needs_its_review_before_closing(teams, engineer):
    incident = incident_open(title="down", severity="sev1", category="api", reporter=engineer)
    incident_resolve(incident=incident, actor=engineer)
    with pytest.raises(IncidentRefused, match="what happened, the root cause, at least one"):
        incident_close(incident=incident, actor=engineer)
    incident.review_what_happened = "The API's pool ran dry."
    incident.review_root_cause = "A leak in the DB client."
    incident.save()
    ActionItem.objects.create(
        incident=incident, description="Fix leak", owner=engineer, due_date="2030-01-01"
    )
    incident_close(incident=incident, actor=engineer)
    assert incident.status == Status.CLOSED


def test_escalation_pages_again_and_only_goes_up(teams, engineer):
    incident = incident_open(title="slow", severity="sev3", category="api", reporter=engineer)
    before = Notification.objects.count()
    with pytest.raises(IncidentRefused, match="more severe"):
        incident_escalate(incident=incident, severity="sev4", actor=engineer)
    incident_escalate(incident=incident, severity="sev1", actor=engineer, reason="all down")
    assert incident.severity == "sev1"
    assert Notification.objects.count() > before
    assert incident.timeline.filter(message__startswith="Escalated SEV3 → SEV1").exists()


def test_timeline_is_append_only(teams, engineer):
    incident = incident_open(title="x", severity="sev4", category="other", reporter=engineer)
    event = incident.timeline.first()
    event.message = "rewritten"
    with pytest.raises(PermissionError):
        event.save()


def test_each_transition_writes_its_own_audit_record_and_a_refusal_changes_nothing(teams, engineer):
    incident = incident_open(title="slow API", severity="sev3", category="api", reporter=engineer)
    history = AuditRecord.objects.filter(
        object_type="incidents.incident", object_id=str(incident.pk), action=AuditAction.OPERATION
    )
    incident_acknowledge(incident=incident, actor=engineer)
    incident_investigate(incident=incident, actor=engineer)
    incident_mitigate(incident=incident, actor=engineer, note="rolled back")
    incident_resolve(incident=incident, actor=engineer, resolution="pool raised")
    incident_close(incident=incident, actor=engineer)
    incident_reopen(incident=incident, actor=engineer, reason="back again")
    messages = list(history.order_by("id").values_list("message", flat=True))
    assert messages == [
        "Incident acknowledged",
        "Incident moved to investigating",
        "Incident mitigated: rolled back",
        "Incident resolved: pool raised",
        "Incident closed",
        "Incident reopened: back again",
    ]
    assert set(history.values_list("actor_id", flat=True)) == {engineer.pk}
    before = (history.count(), incident.timeline.count())
    with pytest.raises(IncidentRefused, match="is open, so it cannot be mitigated"):
        incident_mitigate(incident=incident, actor=engineer)
    incident.refresh_from_db()
    assert incident.status == Status.OPEN
    assert (history.count(), incident.timeline.count()) == before


def test_timeline_records_who_or_what_acted(teams, engineer):
    """Sources on the timeline: a person, an alert, the worker (operation results)."""

    alert = alert_receive(
        fingerprint="src", status="firing", title="API slow", severity="sev3", category="api"
    )
    incident = alert.incident
    incident_acknowledge(incident=incident, actor=engineer)
    sources = list(incident.timeline.values_list("kind", "source", "actor_id"))
    assert (TimelineKind.ALERT, "alert", None) in sources
    assert (TimelineKind.STATUS, "person", engineer.pk) in sources
    # In the order they happened.
    ats = list(incident.timeline.values_list("at", flat=True))
    assert ats == sorted(ats)


def test_a_page_button_passes_its_note_as_the_resolution_or_the_reopen_reason(teams, engineer):
    """incident_transition is what the incident page's status buttons call: one action of
    TRANSITIONS, its note going where that action keeps it."""
    assert set(TRANSITIONS) == {
        "acknowledge",
        "investigate",
        "mitigate",
        "resolve",
        "close",
        "reopen",
    }
    incident = incident_open(title="slow API", severity="sev3", category="api", reporter=engineer)
    incident = incident_transition(
        incident=incident, action="resolve", actor=engineer, note="pool raised"
    )
    assert incident.status == Status.RESOLVED and incident.resolution == "pool raised"
    with pytest.raises(IncidentRefused, match="Say why the incident is reopened"):
        incident_transition(incident=incident, action="reopen", actor=engineer, note=" ")
    incident = incident_transition(
        incident=incident, action="reopen", actor=engineer, note="back again"
    )
    assert incident.status == Status.OPEN
    assert incident.timeline.filter(
        message="Resolved → Open (reopened by erin): back again"
    ).exists()
    with pytest.raises(IncidentRefused, match="no incident action 'delete'"):
        incident_transition(incident=incident, action="delete", actor=engineer)
    incident.refresh_from_db()
    assert incident.status == Status.OPEN


def test_mark_mitigated_is_offered_after_a_successful_fix_to_those_who_manage_incidents(
    teams, engineer, runbooks, redis_target
):
    """The rule behind the page's "Mark mitigated" button: a checklist step that changes a
    system succeeded, the incident is not mitigated yet, the user may manage incidents."""
    groups_load_defaults()
    on_call, viewer = staff_in("On-call engineers"), staff_in("Viewers")
    incident = incident_open(
        title="stale cache",
        severity="sev3",
        category="api",
        reporter=engineer,
        affected_systems=[redis_target],
        runbook_name="High API Response Times",
    )

    def offered(actor):
        steps = list(incident_checklist(incident=incident))
        return incident_mark_mitigated_step(incident=incident, steps=steps, actor=actor)

    assert offered(on_call) is None  # nothing has been fixed yet
    statistics = IncidentStep.objects.get(incident=incident, text="Check Redis cache hit rates")
    read = incident_step_run(step=statistics, actor=on_call, reason="look first")
    execute_operation.apply(args=[read.pk])
    assert Operation.objects.get(pk=read.pk).status == OperationStatus.SUCCEEDED
    assert offered(on_call) is None  # reading statistics changes nothing: no fix
    clear = IncidentStep.objects.get(incident=incident, text="Clear cache if needed")
    fix = incident_step_run(step=clear, actor=on_call, reason="stale keys")
    execute_operation.apply(args=[fix.pk])
    assert Operation.objects.get(pk=fix.pk).status == OperationStatus.SUCCEEDED
    assert offered(on_call) == clear
    assert offered(viewer) is None  # may not manage incidents
    incident_mark_mitigated(incident=incident, actor=on_call)
    incident.refresh_from_db()
    assert incident.status == Status.MITIGATED
    assert offered(on_call) is None  # mitigated already
