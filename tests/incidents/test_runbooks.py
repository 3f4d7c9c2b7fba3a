"""incidents.services.runbooks: the default playbooks, attaching one as a checklist, ticking
its steps, who is offered a step's Run button."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from incidents.models import IncidentStep, Runbook, TimelineKind
from incidents.services import (
    IncidentRefused,
    incident_attach_runbook,
    incident_open,
    incident_step_can_run,
    incident_step_done,
    incidents_load_defaults,
    step_run_permissions,
)
from opsportal.access import groups_load_defaults


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


@pytest.mark.parametrize(
    ("role", "may_clear_cache"),
    [("On-call engineers", True), ("DevOps", True), ("Database admins", False), ("Viewers", False)],
)
def test_a_step_offers_its_run_button_to_the_roles_the_step_service_accepts(
    role, may_clear_cache, teams, engineer, runbooks
):
    groups_load_defaults()
    user = get_user_model().objects.create_user(
        role.lower().replace(" ", "-"), password="role-pass-123", is_staff=True
    )
    user.groups.add(Group.objects.get(name=role))
    incident = incident_open(
        title="slow",
        severity="sev3",
        category="api",
        reporter=engineer,
        runbook_name="High API Response Times",
    )
    clear = IncidentStep.objects.get(incident=incident, text="Clear cache if needed")
    manual = IncidentStep.objects.get(incident=incident, text="User complaints about slow loading")
    assert incident_step_can_run(step=clear, actor=user) is may_clear_cache
    assert user.has_perms(step_run_permissions(clear.operation_kind)) is may_clear_cache
    assert incident_step_can_run(step=manual, actor=user) is False  # a manual step runs nothing
