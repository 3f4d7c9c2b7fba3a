"""Issue #17, incidents: ids that are not ids, notes that are too long or hold NUL, and runbook
step parameters that are empty, not JSON PostgreSQL accepts, too deep or not what the
operation takes: each is a clear message or form error, and nothing changes."""

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from incidents.models import Incident, IncidentStep, Runbook, RunbookStep, TimelineKind
from incidents.services import incident_open

pytestmark = pytest.mark.django_db
HUGE = "9" * 25


@pytest.fixture
def incident(teams, superuser):
    return incident_open(title="slow", severity="sev3", category="api", reporter=superuser)


def said(response) -> str:
    return " ".join(str(m) for m in get_messages(response.wsgi_request))


@pytest.mark.parametrize("runbook", ["x", HUGE, "-1", "", "1.0", "\x00"])
def test_attach_runbook_with_a_runbook_that_is_not_an_id_says_so(
    staff_client, incident, runbooks, runbook
):
    url = reverse("admin:incidents_incident_attach_runbook", args=[incident.pk])
    response = staff_client.post(url, {"runbook": runbook})
    assert response.status_code == 302
    assert "Choose a runbook" in said(response)
    assert not IncidentStep.objects.filter(incident=incident).exists()


@pytest.mark.parametrize(("text", "says"), [("a\x00b", "NUL"), ("x" * 10_001, "at most 10,000")])
def test_a_note_that_is_too_long_or_holds_nul_is_refused(staff_client, incident, text, says):
    url = reverse("admin:incidents_incident_note", args=[incident.pk])
    response = staff_client.post(url, {"text": text})
    assert says in said(response)
    assert not incident.timeline.filter(kind=TimelineKind.NOTE).exists()


@pytest.mark.parametrize(
    "path",
    ["abc/note/", f"{HUGE}/note/", "1/steps/abc/done/", f"1/steps/{HUGE}/run/", "x/evidence/1/"],
)
def test_malformed_incident_ids_in_urls_are_not_found(staff_client, path):
    base = reverse("admin:incidents_incident_changelist")
    assert staff_client.post(base + path, {"text": "x"}).status_code in (302, 404)


@pytest.mark.parametrize("value", [HUGE, "abc", "-1"])
def test_affected_systems_that_are_not_ids_are_a_form_error(staff_client, teams, value):
    response = staff_client.post(
        reverse("admin:incidents_incident_add"),
        {
            "title": "t",
            "severity": "sev3",
            "category": "api",
            "team": teams["devops"].pk,
            "affected_systems": [value],
        },
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["affected_systems"]
    assert not Incident.objects.exists()


def runbook_form(runbook: Runbook, **step) -> dict:
    form = {
        "name": runbook.name,
        "category": runbook.category,
        "symptoms": runbook.symptoms,
        "description": runbook.description,
        "steps-TOTAL_FORMS": "1",
        "steps-INITIAL_FORMS": "0",
        "steps-0-position": "99",
        "steps-0-phase": "resolution",
        "steps-0-text": "Look at the logs",
        "steps-0-operation_kind": "container_logs",
        "steps-0-operation_params": "{}",
    }
    form.update({f"steps-0-{name}": value for name, value in step.items()})
    return form


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ("NaN", "JSON object"),
        ('{"lines": NaN}', "JSON object"),
        ('{"lines": 1e309}', "finite numbers"),
        ('"\\ud800"', "JSON object"),
        ('{"lines": "\\u0000"}', "NUL"),
        ("[" * 1500 + "]" * 1500, "nested too deeply"),
        ("{" + '"a":' * 10 + "1" + "}" * 10, "JSON"),
        ('{"no_such_parameter": 1}', "does not take"),
        ('{"lines": "many"}', "lines must be"),
        ('{"lines": 99999999}', "lines must be at most"),
        ('{"lines": {"nested": 1}}', "single value"),
        ("x" * 5000, "At most 4,000"),
    ],
)
def test_a_runbook_step_with_unusable_parameters_is_a_form_error(
    staff_client, runbooks, params, says
):
    runbook = Runbook.objects.get(name="High API Response Times")
    url = reverse("admin:incidents_runbook_change", args=[runbook.pk])
    response = staff_client.post(url, runbook_form(runbook, operation_params=params))
    assert response.status_code == 200, response.status_code
    assert says in response.content.decode()
    assert not RunbookStep.objects.filter(runbook=runbook, position=99).exists()


def test_a_runbook_step_with_empty_parameters_is_saved_with_none(staff_client, runbooks):
    runbook = Runbook.objects.get(name="High API Response Times")
    url = reverse("admin:incidents_runbook_change", args=[runbook.pk])
    response = staff_client.post(url, runbook_form(runbook, operation_params=""))
    assert response.status_code == 302
    assert RunbookStep.objects.get(runbook=runbook, position=99).operation_params == {}


def test_the_parameter_bound_is_in_the_help_text(staff_client, runbooks):
    runbook = Runbook.objects.get(name="High API Response Times")
    page = staff_client.get(reverse("admin:incidents_runbook_change", args=[runbook.pk]))
    assert "At most 4,000 characters." in page.content.decode()
