"""Bad input gets a 4xx whose message says what was wrong, in the one error body; nothing
is half-applied; never a 500. Refusals carry the service's own words (the admin's)."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.utils import timezone

from incidents.models import Incident, TimelineEvent
from incidents.services import IncidentRefused, incident_close, incident_open
from maintenance.models import MaintenanceWindow, WindowKind
from maintenance.services import window_schedule, window_start
from opsportal.people.models import Team
from opsportal.systems.models import DockerEngine, HttpEndpoint
from tests import realsystems

pytestmark = pytest.mark.django_db

OPEN = {"title": "Checkout slow", "severity": "sev3", "category": "api"}


@pytest.fixture
def devops(api_client):
    client, user, _ = api_client("DevOps")
    return client, user


def _error(response, status: int, *words: str) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) <= {"error", "detail", "fields"} and body["error"] and body["detail"]
    for word in words:
        assert word in json.dumps(body), (word, body)
    return body


def test_malformed_bodies_are_refused_and_create_nothing(devops):
    client, _ = devops
    _error(client.post("/api/v1/incidents/", raw="{title: oops"), 400, "JSON parse error")
    _error(client.post("/api/v1/incidents/", raw="[1, 2]"), 400, "Expected a dictionary")
    _error(client.post("/api/v1/incidents/", raw="null"), 400)
    _error(
        client.post("/api/v1/incidents/", raw="title=x", content_type="text/plain"),
        415,
        "Unsupported media type",
    )
    body = _error(client.post("/api/v1/incidents/", {**OPEN, "sevrity": "sev1"}), 400, "sevrity")
    assert body["fields"] == {"sevrity": ["Unknown field; this endpoint does not take it."]}
    assert not Incident.objects.exists()


def test_wrong_types_and_out_of_range_values_name_the_field(devops):
    client, _ = devops
    body = _error(client.post("/api/v1/incidents/", {**OPEN, "severity": 5, "title": ["a"]}), 400)
    assert set(body["fields"]) == {"severity", "title"}
    _error(client.post("/api/v1/incidents/", {**OPEN, "title": "x" * 201}), 400, "200")
    _error(client.post("/api/v1/incidents/", {**OPEN, "title": "a\x00b"}), 400, "NUL")
    _error(
        client.post("/api/v1/incidents/", raw=json.dumps(OPEN)[:-1] + ', "symptoms": "\\ud800"}'),
        400,
        "surrogate",
    )
    _error(client.get("/api/v1/incidents/", {"status": "bogus"}), 400, "status")
    _error(client.get("/api/v1/incidents/", {"opened_after": "yesterday"}), 400, "opened_after")
    _error(client.get("/api/v1/incidents/", {"search": "a\x00"}), 400, "NUL")
    # Offsets PostgreSQL cannot store are converted, not passed on.
    converted = client.get("/api/v1/incidents/", {"opened_after": "2026-01-01T00:00+19:27"})
    assert converted.status_code == 200
    _error(client.get("/api/v1/incidents/", {"opened_after": "0001-01-01T00:00+10:00"}), 400)
    _error(client.get("/api/v1/incidents/", {"cursor": "not-a-cursor"}), 404, "cursor")
    assert not Incident.objects.exists()


def test_a_list_asked_with_a_parameter_it_does_not_take_says_which_it_takes(devops):
    client, _ = devops
    body = _error(client.get("/api/v1/incidents/", {"stauts": "open"}), 400, "stauts")
    assert body["fields"] == {
        "stauts": [
            "Unknown parameter; this list takes: affected_system, category, cursor, "
            "opened_after, opened_before, page_size, search, severity, status, team."
        ]
    }
    _error(client.get("/api/v1/audit-records/export/", {"object": "x"}), 400, "object_type")
    _error(client.get("/api/v1/maintenance/windows/", {"format": "csv"}), 400, "format")
    _error(
        client.get("/api/v1/backups/latest-verified/", {"database": "x"}),
        400,
        "this list takes: no parameters",
    )
    _error(client.get("/api/v1/maintenance/now/", {"sytem": "web"}), 400, "takes: system.")
    # The ones it takes, together, are fine; so is a parameter on one incident's page.
    query = {"status": "open", "search": "db", "page_size": 5, "cursor": ""}
    assert client.get("/api/v1/incidents/", query).status_code == 200
    incident = client.post(
        "/api/v1/incidents/", {"title": "x", "severity": "sev3", "category": "api"}
    ).json()
    assert client.get(f"/api/v1/incidents/{incident['id']}/", {"x": "1"}).status_code == 200


def test_unknown_ids_and_names_are_404_or_400(devops):
    client, _ = devops
    _error(client.get("/api/v1/incidents/999999/"), 404, "not_found")
    _error(client.get("/api/v1/incidents/" + "9" * 30 + "/"), 404, "no API endpoint")
    _error(client.post("/api/v1/incidents/-1/acknowledge/"), 404)
    _error(client.get("/api/v1/no-such-thing/"), 404)
    # A name that does not exist: refused whole, no incident opened without its system.
    _error(
        client.post("/api/v1/incidents/", {**OPEN, "affected_systems": ["no-such-system"]}),
        400,
        "affected_systems",
    )
    assert not Incident.objects.exists()
    _error(client.get("/api/v1/maintenance/now/"), 400, "system")
    _error(client.get("/api/v1/maintenance/now/", {"system": "nope"}), 404, "nope")


def test_illegal_transitions_carry_the_services_message(devops):
    client, user = devops
    incident = client.post("/api/v1/incidents/", OPEN).json()
    try:
        incident_close(incident=Incident.objects.get(pk=incident["id"]), actor=user)
    except IncidentRefused as refusal:
        admin_says = refusal.message
    body = _error(client.post(f"/api/v1/incidents/{incident['id']}/close/"), 409)
    assert body == {"error": "refused", "detail": admin_says}
    _error(client.post(f"/api/v1/incidents/{incident['id']}/reopen/"), 409, "Say why")
    _error(
        client.post(f"/api/v1/incidents/{incident['id']}/reopen/", {"note": "again"}),
        409,
        "resolved",
    )
    _error(
        client.post(f"/api/v1/incidents/{incident['id']}/escalate/", {"severity": "sev4"}),
        409,
        "more severe",
    )
    _error(client.post(f"/api/v1/incidents/{incident['id']}/notes/", {"text": "  "}), 400, "blank")
    # Refusals change nothing: still open, only the opening events on the timeline.
    assert Incident.objects.get(pk=incident["id"]).status == "open"
    assert not TimelineEvent.objects.filter(incident_id=incident["id"], kind="note").exists()
    # And the right sequence works, with the same words on the timeline as from the admin.
    for step in ("acknowledge", "investigate", "mitigate"):
        assert client.post(f"/api/v1/incidents/{incident['id']}/{step}/").status_code == 200
    answer = client.post(f"/api/v1/incidents/{incident['id']}/resolve/", {"note": "Rolled back"})
    assert answer.json()["status"] == "resolved" and answer.json()["resolution"] == "Rolled back"
    timeline = client.get(f"/api/v1/incidents/{incident['id']}/timeline/").json()["results"]
    assert [e["kind"] for e in timeline].count("status") == 4


def test_an_incident_is_opened_only_for_ones_own_team(devops):
    client, _ = devops
    team = Team.objects.create(name="Payments")
    _error(client.post("/api/v1/incidents/", {**OPEN, "team": team.name}), 409, "not a member")
    _error(client.post("/api/v1/incidents/", {**OPEN, "team": "Nobody"}), 400, "team")
    assert not Incident.objects.exists()


def test_operations_keep_to_the_incident_and_changing_ones_need_a_reason(api_client):
    client, user, _ = api_client("On-call engineers")
    engine = DockerEngine.objects.create(
        name="ops-engine", base_url=f"tcp://127.0.0.1:{realsystems.free_port()}"
    )
    elsewhere = HttpEndpoint.objects.create(name="elsewhere", url="http://127.0.0.1:9/")
    incident = incident_open(
        title="Web down",
        severity="sev2",
        category="container",
        reporter=user,
        affected_systems=[engine],
    )
    url = f"/api/v1/incidents/{incident.pk}/operations/"
    restart = {"kind": "container_restart", "target": engine.name, "params": {"container": "web"}}
    _error(client.post(url, restart), 400, "say why")
    _error(client.post(url, {**restart, "reason": "hung", "params": {"nonsense": 1}}), 409)
    _error(
        client.post(url, {"kind": "api_probe", "target": elsewhere.name, "reason": "look"}),
        409,
        "not one of the systems",
    )
    # A kind the role may not run: On-call engineers do not stop containers.
    _error(client.post(url, {**restart, "kind": "container_stop", "reason": "x"}), 403, "run_")
    _error(client.post(url, {**restart, "kind": "rm -rf"}), 400, "kind")
    answer = client.post(url, {**restart, "reason": "hung"})
    assert answer.status_code == 201, answer.content
    operation = answer.json()
    assert operation["status"] == "queued" and operation["incident"] == incident.pk
    # The per-target lock: a second change on the same system is refused with who holds it.
    _error(client.post(url, {**restart, "reason": "again"}), 409, "already has a changing")
    read = client.get(f"/api/v1/operations/{operation['id']}/").json()
    assert read["kind"] == "container_restart" and read["target"] == engine.name


def test_maintenance_windows_are_validated_by_the_service(devops):
    client, _ = devops
    web = HttpEndpoint.objects.create(name="web", url="http://127.0.0.1:9/")
    past = (timezone.now() - dt.timedelta(days=1)).isoformat()
    later = (timezone.now() + dt.timedelta(hours=5)).isoformat()
    window = {"title": "Upgrade", "kind": "ad_hoc", "systems": ["web"]}
    # load_defaults generated the plans' coming windows; none of the refused ones is added.
    windows_before = MaintenanceWindow.objects.count()
    _error(
        client.post(
            "/api/v1/maintenance/windows/", {**window, "starts_at": later, "ends_at": past}
        ),
        400,
        "ends_at",
    )
    _error(
        client.post(
            "/api/v1/maintenance/windows/",
            {**window, "starts_at": later, "ends_at": "9999-12-31T23:59:59-10:00"},
        ),
        400,
    )
    _error(
        client.post(
            "/api/v1/maintenance/windows/",
            {**window, "starts_at": later, "ends_at": later, "status": "completed"},
        ),
        400,
        "status",
    )
    assert MaintenanceWindow.objects.count() == windows_before
    start = timezone.now() + dt.timedelta(hours=1)
    created = client.post(
        "/api/v1/maintenance/windows/",
        {**window, "starts_at": start.isoformat(), "ends_at": later},
    )
    assert created.status_code == 201, created.content
    pk = created.json()["id"]
    moved = client.patch(f"/api/v1/maintenance/windows/{pk}/", {"ends_at": past})
    _error(moved, 400, "ends_at")
    _error(client.post(f"/api/v1/maintenance/windows/{pk}/cancel/", {}), 400, "reason")
    cancelled = client.post(f"/api/v1/maintenance/windows/{pk}/cancel/", {"reason": "moved"})
    assert cancelled.json()["status"] == "cancelled"
    _error(client.post(f"/api/v1/maintenance/windows/{pk}/cancel/", {"reason": "x"}), 409)
    assert web.pk


def test_a_window_without_owner_answers_with_every_field_after_a_partial_update(devops):
    """A plan's generated window has no owner: a PATCH's answer still carries "owner": null
    (the schema requires every field; Schemathesis found it missing once)."""
    client, _ = devops
    generated = MaintenanceWindow.objects.filter(owner=None, plan__isnull=False).first()
    assert generated is not None, "load_defaults generates the plans' coming windows"
    answer = client.patch(
        f"/api/v1/maintenance/windows/{generated.pk}/", {"title": "Monthly, moved"}
    )
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["owner"] is None and body["title"] == "Monthly, moved"
    assert body["plan"] == generated.plan_id
    assert client.get(f"/api/v1/maintenance/windows/{generated.pk}/").json() == body


def test_maintenance_now_answers_for_a_window_in_progress(devops):
    client, user = devops
    web = HttpEndpoint.objects.create(name="web", url="http://127.0.0.1:9/")
    HttpEndpoint.objects.create(name="other", url="http://127.0.0.1:9/")
    assert client.get("/api/v1/maintenance/now/", {"system": "web"}).json() == {
        "system": "web",
        "in_maintenance": False,
        "window": None,
    }
    window = window_schedule(
        window=MaintenanceWindow(
            title="Database upgrade",
            kind=WindowKind.AD_HOC,
            starts_at=timezone.now(),
            ends_at=timezone.now() + dt.timedelta(hours=1),
        ),
        systems=[web],
        actor=user,
    )
    window_start(window=window, actor=user, override_reason="the API test")
    answer = client.get("/api/v1/maintenance/now/", {"system": "web"}).json()
    assert answer["in_maintenance"] is True and answer["window"]["id"] == window.pk
    assert (
        client.get("/api/v1/maintenance/now/", {"system": "other"}).json()["in_maintenance"]
        is False
    )


def test_every_list_takes_exactly_the_query_parameters_its_schema_documents(devops):
    """The unknown-parameter check and the OpenAPI document name the same parameters for
    every GET that is not one object's page: a client generated from the schema is never
    refused, and a parameter the schema does not name is never silently ignored."""
    from drf_spectacular.generators import SchemaGenerator

    client, _ = devops
    schema = SchemaGenerator().get_schema(request=None, public=True)
    checked = 0
    for path, item in schema["paths"].items():
        if "get" not in item or "{" in path or not path.startswith("/api/v1/"):
            continue
        documented = {p["name"] for p in item["get"].get("parameters", []) if p["in"] == "query"}
        body = _error(client.get(path, {"not_a_parameter": "1"}), 400, "not_a_parameter")
        message = body["fields"]["not_a_parameter"][0]
        takes = message.removeprefix("Unknown parameter; this list takes: ").removesuffix(".")
        accepted = set() if takes == "no parameters" else set(takes.split(", "))
        assert accepted == documented, path
        checked += 1
    assert checked >= 10
