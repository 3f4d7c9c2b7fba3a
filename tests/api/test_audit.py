"""The audit history through the API: the admin list's filters and search narrow the rows,
cursor pages walk every row once (and rows added meanwhile do not shift them), and the
NDJSON export streams the filtered range oldest first, one JSON object per line."""

from __future__ import annotations

import json

import pytest
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from opsportal.audit.models import AuditRecord
from opsportal.audit.services import audit_record

pytestmark = pytest.mark.django_db


@pytest.fixture
def history(api_client):
    """An auditor's token, and records of each kind around a moment in the middle."""
    client, auditor, _ = api_client("Viewers")
    before = [
        audit_record(
            action="login",
            object_type="auth.user",
            object_id=str(auditor.pk),
            object_repr="api-viewers",
            source="admin",
            actor=auditor,
        ),
        audit_record(
            action="change",
            object_type="systems.redis",
            object_id="7",
            object_repr="sessions-cache",
            message="timeout raised",
            source="cli",
        ),
    ]
    middle = timezone.now()
    after = [
        audit_record(
            action="operation",
            object_type="operations.operation",
            object_id="3",
            object_repr="restart api-1",
            outcome="failure",
            message="exit 1",
            source="api",
            actor=auditor,
        ),
        audit_record(
            action="change",
            object_type="systems.redis",
            object_id="7",
            object_repr="sessions-cache",
            message="maxmemory 2gb",
            source="admin",
        ),
    ]
    return client, auditor, before, middle, after


def listed(client, query: dict) -> list[dict]:
    """Every row the filters let through (the seeded defaults' records among them)."""
    response = client.get("/api/v1/audit-records/", {**query, "page_size": 500})
    assert response.status_code == 200, response.content
    assert response.json()["next"] is None
    return response.json()["results"]


def test_the_admin_lists_filters_and_search_narrow_the_records(history):
    client, auditor, before, middle, after = history
    login, cli_change = before
    failed_operation, admin_change = after
    mine = {r.pk for r in [*before, *after]}

    def of_mine(query: dict, check) -> list[int]:
        rows = listed(client, query)
        assert rows and all(check(row) for row in rows), rows
        return [row["id"] for row in rows if row["id"] in mine]

    assert of_mine({"action": "change"}, lambda r: r["action"] == "change") == [
        admin_change.pk,
        cli_change.pk,
    ]
    assert of_mine({"source": ["cli", "api"]}, lambda r: r["source"] in ("cli", "api")) == [
        failed_operation.pk,
        cli_change.pk,
    ]
    assert of_mine({"outcome": "failure"}, lambda r: r["outcome"] == "failure") == [
        failed_operation.pk
    ]
    assert of_mine(
        {"object_type": "systems.redis", "object_id": "7"},
        lambda r: (r["object_type"], r["object_id"]) == ("systems.redis", "7"),
    ) == [admin_change.pk, cli_change.pk]
    assert of_mine(
        {"actor": auditor.pk, "action": ["login", "operation"]},
        lambda r: r["actor"] == auditor.pk and r["action"] in ("login", "operation"),
    ) == [failed_operation.pk, login.pk]
    assert of_mine(
        {"at_after": middle.isoformat()}, lambda r: parse_datetime(r["at"]) >= middle
    ) == [
        admin_change.pk,
        failed_operation.pk,
    ]
    assert of_mine(
        {"at_before": middle.isoformat()}, lambda r: parse_datetime(r["at"]) < middle
    ) == [
        cli_change.pk,
        login.pk,
    ]
    assert of_mine({"search": "maxmemory 2gb"}, lambda r: "maxmemory" in r["message"]) == [
        admin_change.pk
    ]
    one = client.get(f"/api/v1/audit-records/{failed_operation.pk}/").json()
    assert (one["actor"], one["actor_name"], one["outcome"]) == (
        auditor.pk,
        "api-viewers",
        "failure",
    )
    assert one["hash"] == failed_operation.hash and one["prev_hash"] == cli_change.hash


def test_cursor_pages_walk_every_record_once_newest_first(history):
    client, *_ = history
    everything = list(AuditRecord.objects.order_by("-id").values_list("id", flat=True))
    assert len(everything) >= 5  # the token's creation is audited too
    seen: list[int] = []
    page = client.get("/api/v1/audit-records/", {"page_size": 2})
    while True:
        body = page.json()
        assert len(body["results"]) <= 2
        seen += [row["id"] for row in body["results"]]
        if len(seen) == 2:
            # A record written meanwhile goes on top, not into the pages still to come.
            audit_record(action="change", object_type="x.y", object_id="1", object_repr="new")
        if not body["next"]:
            break
        assert "cursor=" in body["next"] and "page=" not in body["next"]
        page = client.get(body["next"])
    assert seen == everything


def test_the_export_streams_the_filtered_range_oldest_first_as_ndjson(history):
    client, _, before, middle, after = history
    response = client.get(
        "/api/v1/audit-records/export/",
        {"object_type": "systems.redis"},
        headers={"Accept": "application/x-ndjson"},
    )
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"] == "application/x-ndjson"
    assert "attachment" in response["Content-Disposition"]
    body = b"".join(response.streaming_content).decode()
    assert body.endswith("\n")
    lines = [json.loads(line) for line in body.splitlines()]
    assert [line["id"] for line in lines] == list(
        AuditRecord.objects.filter(object_type="systems.redis")
        .order_by("id")
        .values_list("id", flat=True)
    )
    assert [line["id"] for line in lines if line["object_id"] == "7"] == [
        before[1].pk,
        after[1].pk,
    ]
    assert lines[-1]["message"] == "maxmemory 2gb" and lines[-1]["source"] == "admin"
    assert lines[-2]["hash"] == before[1].hash
    since = client.get("/api/v1/audit-records/export/", {"at_after": middle.isoformat()})
    exported = [json.loads(line)["id"] for line in b"".join(since.streaming_content).splitlines()]
    assert exported == [after[0].pk, after[1].pk]


def test_a_long_export_goes_on_in_the_part_its_link_names(history, settings):
    """Each response ends before the web worker's timeout could cut it: at most
    API_AUDIT_EXPORT_PART_ROWS records, then a Link to the next part, with the filters kept;
    a record written between parts comes in a later part, none is missed or repeated."""
    client, *_ = history
    settings.API_AUDIT_EXPORT_PART_ROWS = 2
    everything = list(AuditRecord.objects.order_by("id").values_list("id", flat=True))
    assert len(everything) > 4
    url, exported, parts = "/api/v1/audit-records/export/", [], 0
    while url:
        response = client.get(url, headers={"Accept": "application/x-ndjson"})
        assert response.status_code == 200
        part = [
            json.loads(line)["id"] for line in b"".join(response.streaming_content).splitlines()
        ]
        assert 1 <= len(part) <= 2
        exported += part
        parts += 1
        if parts == 1:
            newest = audit_record(
                action="change", object_type="x.y", object_id="1", object_repr="new"
            )
            everything.append(newest.pk)
        link = response.get("Link", "")
        assert link == "" or link.endswith('>; rel="next"')
        url = link[1 : link.index(">")] if link else ""
        assert not url or f"after_id={part[-1]}" in url
    assert exported == everything and parts == (len(everything) + 1) // 2
    # The filters go on into the next part.
    settings.API_AUDIT_EXPORT_PART_ROWS = 1
    redis = client.get("/api/v1/audit-records/export/", {"object_type": "systems.redis"})
    assert "object_type=systems.redis" in redis["Link"]
    rest = client.get(redis["Link"][1 : redis["Link"].index(">")])
    assert "Link" not in rest
    lines = b"".join([*redis.streaming_content, *rest.streaming_content]).splitlines()
    assert [json.loads(line)["object_type"] for line in lines] == ["systems.redis"] * len(lines)
    assert len(lines) == AuditRecord.objects.filter(object_type="systems.redis").count()


def test_a_filter_few_records_match_is_exported_in_parts_of_a_bounded_id_range(history, settings):
    """A part looks at no more than API_AUDIT_EXPORT_PART_IDS consecutive ids, so a sparse
    filter does not scan the whole table in one response: parts may be empty, and together
    they hold every matching record once, oldest first."""
    client, *_ = history
    settings.API_AUDIT_EXPORT_PART_ROWS = 1
    settings.API_AUDIT_EXPORT_PART_IDS = 3
    ids = list(AuditRecord.objects.order_by("id").values_list("id", flat=True))
    url = "/api/v1/audit-records/export/?object_type=systems.redis"
    exported, sizes = [], []
    while url:
        response = client.get(url)
        assert response.status_code == 200
        part = [json.loads(line) for line in b"".join(response.streaming_content).splitlines()]
        assert all(row["object_type"] == "systems.redis" for row in part)
        exported += [row["id"] for row in part]
        sizes.append(len(part))
        link = response.get("Link", "")
        url = link[1 : link.index(">")] if link else ""
    assert exported == list(
        AuditRecord.objects.filter(object_type="systems.redis")
        .order_by("id")
        .values_list("id", flat=True)
    )
    assert 0 in sizes and max(sizes) == 1
    # Each part covered at most 3 ids: at least as many parts as the ids fill.
    assert len(sizes) >= (ids[-1] - ids[0] + 1) // 3
