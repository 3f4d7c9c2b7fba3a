"""Incidents through the API beyond the role table: each list filter and the admin's search
narrow the rows, an incident's page carries its newest timeline (the rest paged on its own),
attaching a runbook makes its checklist, and an operation requested on an incident is read
back with the output of its real run."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from incidents.models import IncidentStep, Runbook, RunbookStep
from incidents.services import incident_add_note, incident_open
from opsportal.operations.tasks import execute_operation
from opsportal.people.models import Team
from opsportal.systems.models import HttpEndpoint

pytestmark = pytest.mark.django_db


def listed(client, query: dict) -> list[int]:
    response = client.get("/api/v1/incidents/", query)
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


def test_each_filter_and_the_search_narrow_the_list(api_client):
    client, user, _ = api_client("superuser")
    web = HttpEndpoint.objects.create(name="web", url="http://127.0.0.1:9/")
    api = HttpEndpoint.objects.create(name="api", url="http://127.0.0.1:9/")
    dba, devops = Team.objects.get(name="Database admins"), Team.objects.get(name="DevOps team")
    first = incident_open(
        title="Orders database refuses connections",
        severity="sev1",
        category="database",
        team=dba,
        reporter=user,
        symptoms="FATAL: too many clients already",
        affected_systems=[api],
    )
    middle = timezone.now()
    second = incident_open(
        title="Slow pages",
        severity="sev3",
        category="api",
        team=devops,
        reporter=user,
        symptoms="p95 at 900 ms since the deploy",
        affected_systems=[web, api],
    )
    assert listed(client, {}) == [second.pk, first.pk]
    assert listed(client, {"severity": "sev1"}) == [first.pk]
    assert listed(client, {"severity": ["sev1", "sev3"]}) == [second.pk, first.pk]
    assert listed(client, {"category": "api"}) == [second.pk]
    assert listed(client, {"team": "Database admins"}) == [first.pk]
    assert listed(client, {"affected_system": "web"}) == [second.pk]
    assert listed(client, {"affected_system": "api"}) == [second.pk, first.pk]
    assert listed(client, {"opened_after": middle.isoformat()}) == [second.pk]
    assert listed(client, {"opened_before": middle.isoformat()}) == [first.pk]
    assert listed(client, {"status": "open"}) == [second.pk, first.pk]
    assert listed(client, {"status": "resolved"}) == []
    # The admin's search: the title and the symptoms.
    assert listed(client, {"search": "slow"}) == [second.pk]
    assert listed(client, {"search": "too many clients"}) == [first.pk]
    assert listed(client, {"search": "database", "severity": "sev3"}) == []


def test_an_incidents_page_carries_its_newest_timeline(api_client):
    client, user, _ = api_client("superuser")
    incident = incident_open(title="Web down", severity="sev2", category="api", reporter=user)
    for n in range(3):
        incident_add_note(incident=incident, actor=user, text=f"note {n}")
    page = client.get(f"/api/v1/incidents/{incident.pk}/").json()
    assert page["timeline_truncated"] is False
    events = page["timeline"]
    assert [e["message"] for e in events][-3:] == ["note 0", "note 1", "note 2"]
    assert events[-1]["actor"] == user.username and events[-1]["kind"] == "note"
    assert [e["at"] for e in events] == sorted(e["at"] for e in events)  # oldest first
    paged = client.get(f"/api/v1/incidents/{incident.pk}/timeline/", {"page_size": 500}).json()
    assert [e["id"] for e in paged["results"]] == [e["id"] for e in events]

    for n in range(3, 201):
        incident_add_note(incident=incident, actor=user, text=f"note {n}")
    page = client.get(f"/api/v1/incidents/{incident.pk}/").json()
    assert page["timeline_truncated"] is True and len(page["timeline"]) == 200
    assert page["timeline"][-1]["message"] == "note 200"
    everything: list[int] = []
    url = f"/api/v1/incidents/{incident.pk}/timeline/?page_size=100"
    while url:
        body = client.get(url).json()
        everything += [e["id"] for e in body["results"]]
        url = body["next"]
    assert len(everything) == len(set(everything)) > 200
    assert everything[-200:] == [e["id"] for e in page["timeline"]]


def test_attaching_a_runbook_makes_its_checklist(api_client):
    client, user, _ = api_client("On-call engineers")
    incident = incident_open(title="Slow pages", severity="sev3", category="api", reporter=user)
    assert not IncidentStep.objects.filter(incident=incident).exists()
    answer = client.post(
        f"/api/v1/incidents/{incident.pk}/runbooks/", {"runbook": "High API Response Times"}
    )
    assert answer.status_code == 200, answer.content
    assert answer.json()["runbook"] == "High API Response Times"
    runbook = Runbook.objects.get(name="High API Response Times")
    checklist = IncidentStep.objects.filter(incident=incident).order_by("pk")
    assert [(s.text, s.operation_kind) for s in checklist] == [
        (s.text, s.operation_kind) for s in RunbookStep.objects.filter(runbook=runbook)
    ]
    assert "Check Redis cache hit rates" in [s.text for s in checklist]
    timeline = client.get(f"/api/v1/incidents/{incident.pk}/").json()["timeline"]
    assert any("High API Response Times" in e["message"] for e in timeline)
    unknown = client.post(f"/api/v1/incidents/{incident.pk}/runbooks/", {"runbook": "Nope"})
    assert unknown.status_code == 400 and "runbook" in unknown.json()["fields"]


def test_an_operation_requested_on_an_incident_reads_back_with_its_output(api_client, redis_target):
    client, user, _ = api_client("On-call engineers")
    incident = incident_open(
        title="Cache misses",
        severity="sev3",
        category="api",
        reporter=user,
        affected_systems=[redis_target],
    )
    answer = client.post(
        f"/api/v1/incidents/{incident.pk}/operations/",
        {"kind": "cache_statistics", "target": redis_target.name},
    )
    assert answer.status_code == 201, answer.content
    operation = answer.json()
    assert (operation["status"], operation["output"], operation["changing"]) == (
        "queued",
        "",
        False,
    )
    execute_operation.apply(args=[operation["id"]])
    read = client.get(f"/api/v1/operations/{operation['id']}/").json()
    assert read["status"] == "succeeded", read["error"]
    assert "hit rate" in read["output"].lower() and read["finished_at"]
    assert read["requested_by"] == user.username and read["incident"] == incident.pk
    mine = client.get("/api/v1/operations/", {"incident": incident.pk}).json()["results"]
    assert [o["id"] for o in mine] == [operation["id"]]


def test_the_lists_queries_do_not_grow_with_the_page_size(api_client):
    client, user, _ = api_client("superuser")
    web = HttpEndpoint.objects.create(name="web", url="http://127.0.0.1:9/")
    for n in range(30):
        incident_open(
            title=f"Incident {n}",
            severity="sev3",
            category="api",
            reporter=user,
            affected_systems=[web],
        )
    client.get("/api/v1/incidents/")  # the process's first request fills Django's own caches
    counts = {}
    for size in (5, 30):
        with CaptureQueriesContext(connection) as queries:
            assert len(listed(client, {"page_size": size})) == size
        counts[size] = len(queries)
    assert counts[5] == counts[30], counts
