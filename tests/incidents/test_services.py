import pytest

from incidents.models import (
    ActionItem,
    Alert,
    Incident,
    IncidentStep,
    Runbook,
    Status,
    TimelineEvent,
    TimelineKind,
)
from incidents.services import (
    IncidentRefused,
    alert_receive,
    incident_acknowledge,
    incident_attach_runbook,
    incident_close,
    incident_escalate,
    incident_investigate,
    incident_mitigate,
    incident_open,
    incident_reopen,
    incident_resolve,
    incident_step_done,
    incidents_load_defaults,
    paging_responsibilities,
)
from opsportal.audit.models import AuditAction, AuditRecord
from opsportal.people.models import Notification, Responsibility


def kinds(incident):
    return list(incident.timeline.values_list("kind", flat=True))


def test_open_pages_on_call_and_devops_for_a_container_incident(teams, engineer):
    incident = incident_open(
        title="api container restarting",
        severity="sev2",
        category="container",
        team=teams[Responsibility.DEVOPS],
        reporter=engineer,
        symptoms="OOMKilled errors",
    )
    assert incident.status == Status.OPEN
    assert incident.detected_at is not None
    recipients = set(
        Notification.objects.filter(about_id=str(incident.pk)).values_list("recipient", flat=True)
    )
    assert recipients == {
        "on_call@example.com",
        "olga@example.com",
        "olga@pager",
        "devops@example.com",
    }
    paged = incident.timeline.filter(kind=TimelineKind.NOTIFICATION)
    assert paged.count() == 2
    assert any("olga@pager" in e.message for e in paged)
    assert kinds(incident)[0] == TimelineKind.OPENED
    assert AuditRecord.objects.filter(
        object_type="incidents.incident", object_id=str(incident.pk)
    ).exists()


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


def test_routing_follows_severity_and_category():
    assert paging_responsibilities(severity="sev4", category="security") == ["security"]
    assert paging_responsibilities(severity="sev3", category="database") == ["on_call", "database"]
    assert paging_responsibilities(severity="sev1", category="api") == ["on_call", "devops"]
    assert paging_responsibilities(severity="sev4", category="other") == ["on_call"]


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


def test_default_runbooks_are_the_runbooks_words_and_idempotent(db):
    incidents_load_defaults()
    incidents_load_defaults()
    assert set(Runbook.objects.values_list("name", flat=True)) == {
        "High API Response Times",
        "Database Connection Issues",
        "Container Issues",
        "Security Incident Response",
    }
    api = Runbook.objects.get(name="High API Response Times")
    investigation = list(api.steps.filter(phase="investigation").values_list("text", flat=True))
    assert investigation == [
        "Check database performance",
        "Review API logs",
        "Check Redis cache hit rates",
        "Monitor container resources",
    ]
    resolution = list(api.steps.filter(phase="resolution").values_list("text", flat=True))
    assert resolution == [
        "Restart slow services",
        "Clear cache if needed",
        "Scale containers if necessary",
    ]
    security = Runbook.objects.get(name="Security Incident Response")
    assert list(security.steps.filter(phase="immediate").values_list("text", flat=True)) == [
        "Isolate affected systems",
        "Preserve evidence",
        "Notify security team",
    ]
    # An operator's edit survives a reload.
    step = api.steps.get(text="Review API logs")
    step.operation_params = {"lines": 50}
    step.save()
    incidents_load_defaults()
    step.refresh_from_db()
    assert step.operation_params == {"lines": 50}


def test_attaching_a_runbook_copies_its_steps_with_targets(
    teams, engineer, runbooks, http_endpoint
):
    incident = incident_open(
        title="slow",
        severity="sev3",
        category="api",
        reporter=engineer,
        affected_systems=[http_endpoint],
        runbook_name="High API Response Times",
    )
    steps = list(IncidentStep.objects.filter(incident=incident).order_by("position"))
    assert len(steps) == 9
    probe = steps[0]
    assert probe.operation_kind == "api_probe" and probe.target_id == http_endpoint.pk
    with pytest.raises(IncidentRefused, match="already attached"):
        incident_attach_runbook(
            incident=incident,
            runbook=Runbook.objects.get(name="High API Response Times"),
            actor=engineer,
        )
    manual = steps[1]
    incident_step_done(step=manual, actor=engineer, note="three tickets")
    assert incident.timeline.filter(
        kind=TimelineKind.STEP, message__contains="three tickets"
    ).exists()


def test_repeat_firing_joins_the_open_incident_and_resolved_auto_resolves(teams, runbooks):
    first = alert_receive(
        fingerprint="abc",
        status="firing",
        title="API p95 over 500ms",
        severity="sev3",
        category="api",
        evidence="p95=812ms",
    )
    again = alert_receive(
        fingerprint="abc",
        status="firing",
        title="API p95 over 500ms",
        severity="sev2",
        category="api",
    )
    assert first.incident_id == again.incident_id
    assert Incident.objects.count() == 1
    incident = first.incident
    incident.refresh_from_db()
    assert incident.severity == "sev2"  # the repeat was worse: escalated
    assert incident.source == "alert"
    resolved = alert_receive(
        fingerprint="abc",
        status="resolved",
        title="API p95 over 500ms",
        severity="sev2",
        category="api",
        auto_resolve=True,
    )
    incident.refresh_from_db()
    assert resolved.incident_id == incident.pk and incident.status == Status.RESOLVED
    messages = list(
        incident.timeline.filter(kind=TimelineKind.ALERT).values_list("message", flat=True)
    )
    assert messages[0].startswith("Alert firing") and messages[1].startswith("Alert fired again")
    assert messages[2].startswith("Alert resolved")
    # After resolution a new firing opens a new incident.
    alert_receive(
        fingerprint="abc",
        status="firing",
        title="API p95 over 500ms",
        severity="sev3",
        category="api",
    )
    assert Incident.objects.count() == 2


def test_bad_alert_input_is_refused(db):
    with pytest.raises(IncidentRefused, match="firing or resolved"):
        alert_receive(fingerprint="x", status="pending", title="t", severity="sev3", category="api")
    with pytest.raises(IncidentRefused, match="Unknown severity"):
        alert_receive(fingerprint="x", status="firing", title="t", severity="p1", category="api")
    assert not Alert.objects.exists() and not TimelineEvent.objects.exists()


def test_every_default_runbook_has_the_runbooks_symptoms_and_steps(db):
    """All four runbooks word for word (the Common Issues' symptoms, investigation and
    resolution; Security Incident Response's three phases), in the runbook's order."""
    incidents_load_defaults()

    def phases(name):
        runbook = Runbook.objects.get(name=name)
        steps = runbook.steps.order_by("position")
        by_phase = {}
        for phase, text in steps.values_list("phase", "text"):
            by_phase.setdefault(phase, []).append(text)
        # Symptoms are checklist steps too (a probe can check "API responses >500ms").
        assert by_phase.pop("symptoms", []) == runbook.symptoms.splitlines()
        return runbook.symptoms.splitlines(), by_phase

    assert phases("High API Response Times") == (
        ["API responses >500ms", "User complaints about slow loading"],
        {
            "investigation": [
                "Check database performance",
                "Review API logs",
                "Check Redis cache hit rates",
                "Monitor container resources",
            ],
            "resolution": [
                "Restart slow services",
                "Clear cache if needed",
                "Scale containers if necessary",
            ],
        },
    )
    assert phases("Database Connection Issues") == (
        ["Connection timeouts", '"Too many connections" errors'],
        {
            "investigation": [
                "Check connection pool status",
                "Review database logs",
                "Monitor active connections",
            ],
            "resolution": [
                "Restart database connections",
                "Increase connection pool size",
                "Kill long-running queries",
            ],
        },
    )
    assert phases("Container Issues") == (
        ["Containers not starting", "OOMKilled errors", "High CPU usage"],
        {
            "investigation": [
                "Check container logs",
                "Monitor resource usage",
                "Review Docker daemon logs",
            ],
            "resolution": [
                "Restart containers",
                "Increase resource limits",
                "Check for memory leaks",
            ],
        },
    )
    _, security = phases("Security Incident Response")
    assert security == {
        "immediate": ["Isolate affected systems", "Preserve evidence", "Notify security team"],
        "investigation": [
            "Review security logs",
            "Check access patterns",
            "Analyze attack vectors",
        ],
        "recovery": [
            "Patch vulnerabilities",
            "Update security policies",
            "Monitor for further activity",
        ],
    }


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


def test_a_resolved_alert_without_auto_resolve_is_recorded_but_leaves_the_incident_open(
    teams, runbooks
):
    firing = alert_receive(
        fingerprint="nar", status="firing", title="Disk 90%", severity="sev3", category="other"
    )
    alert_receive(
        fingerprint="nar", status="resolved", title="Disk 90%", severity="sev3", category="other"
    )
    incident = firing.incident
    incident.refresh_from_db()
    assert incident.status == Status.OPEN
    last = incident.timeline.filter(kind=TimelineKind.ALERT).last()
    assert last.message.startswith("Alert resolved") and last.source == "alert"


@pytest.mark.parametrize(
    ("category", "paged_team"),
    [("database", "database@example.com"), ("security", "security@example.com")],
)
def test_opening_pages_the_dbas_or_the_security_team_by_category(
    teams, engineer, category, paged_team
):
    incident = incident_open(title="x", severity="sev2", category=category, reporter=engineer)
    recipients = set(
        Notification.objects.filter(about_id=str(incident.pk)).values_list("recipient", flat=True)
    )
    assert paged_team in recipients and "olga@pager" in recipients
    assert "devops@example.com" not in recipients
    paged = " ".join(
        incident.timeline.filter(kind=TimelineKind.NOTIFICATION).values_list("message", flat=True)
    )
    assert f"({teams[category].name}): " in paged and paged_team in paged, paged
