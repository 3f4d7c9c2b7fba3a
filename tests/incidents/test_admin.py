"""The admin workflow with the test client: opening, transitions, steps, run page."""

import hashlib
import time

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.urls import reverse

from incidents.models import Incident, IncidentStep, Runbook, Status, TimelineKind
from incidents.services import incident_open
from opsportal.access import groups_load_defaults
from opsportal.operations.models import Operation
from opsportal.people.models import Responsibility
from tests.previewing import post_confirmed


@pytest.fixture
def member_client(client, engineer):
    groups_load_defaults()
    engineer.groups.add(Group.objects.get(name="DevOps"))
    client.force_login(engineer)
    return client


def test_a_team_member_opens_an_incident_with_the_short_form(member_client, teams, http_endpoint):
    response = member_client.post(
        reverse("admin:incidents_incident_add"),
        {
            "title": "API slow",
            "severity": "sev3",
            "category": "api",
            "team": teams[Responsibility.DEVOPS].pk,
            "symptoms": "p95 800ms",
            "affected_systems": [http_endpoint.pk],
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    incident = Incident.objects.get()
    assert incident.reporter.username == "erin" and incident.status == Status.OPEN
    assert [s.pk for s in incident.affected_systems.all()] == [http_endpoint.pk]
    assert incident.timeline.filter(kind=TimelineKind.NOTIFICATION).exists()
    # Another team is not on offer.
    page = member_client.get(reverse("admin:incidents_incident_add")).content.decode()
    assert "Security team" not in page


def test_changelist_shows_my_teams_open_incidents_first(member_client, teams, engineer, superuser):
    mine = incident_open(
        title="mine",
        severity="sev4",
        category="other",
        team=teams[Responsibility.DEVOPS],
        reporter=engineer,
    )
    incident_open(
        title="newer, not mine",
        severity="sev4",
        category="other",
        team=teams[Responsibility.SECURITY],
        reporter=superuser,
    )
    response = member_client.get(reverse("admin:incidents_incident_changelist"))
    assert response.status_code == 200
    assert [i.title for i in response.context["my_open_incidents"]] == ["mine"]
    assert "My team's open incidents" in response.content.decode()
    titles = [i.title for i in response.context["cl"].result_list]
    assert titles == ["newer, not mine", "mine"]
    filtered = member_client.get(
        reverse("admin:incidents_incident_changelist") + "?status__exact=open&q=newer"
    )
    assert [i.title for i in filtered.context["cl"].result_list] == ["newer, not mine"]
    assert mine.pk


def test_buttons_transition_and_refuse_with_a_message(member_client, teams, engineer):
    incident = incident_open(title="x", severity="sev2", category="api", reporter=engineer)
    url = reverse("admin:incidents_incident_transition", args=[incident.pk, "acknowledge"])
    response = member_client.post(url, follow=True)
    assert "acknowledge done" in response.content.decode()
    incident.refresh_from_db()
    assert incident.status == Status.ACKNOWLEDGED
    response = member_client.post(url, follow=True)
    assert "is acknowledged, so it cannot be acknowledged" in response.content.decode()
    member_client.post(
        reverse("admin:incidents_incident_transition", args=[incident.pk, "resolve"]),
        {"note": "fixed"},
    )
    response = member_client.post(
        reverse("admin:incidents_incident_transition", args=[incident.pk, "close"]), follow=True
    )
    assert "needs its post-incident review" in response.content.decode()


def test_attach_runbook_and_run_a_changing_step_needs_a_reason(
    member_client, teams, engineer, runbooks, redis_target
):
    incident = incident_open(
        title="slow",
        severity="sev3",
        category="api",
        reporter=engineer,
        affected_systems=[redis_target],
    )
    page = member_client.get(
        reverse("admin:incidents_incident_change", args=[incident.pk])
    ).content.decode()
    assert "High API Response Times (suggested for API performance)" in page
    member_client.post(
        reverse("admin:incidents_incident_attach_runbook", args=[incident.pk]),
        {"runbook": Runbook.objects.get(name="High API Response Times").pk},
    )
    clear = IncidentStep.objects.get(incident=incident, text="Clear cache if needed")
    assert clear.target_id == redis_target.pk
    run_url = reverse("admin:incidents_incident_step_run", args=[incident.pk, clear.pk])
    page = member_client.get(run_url).content.decode()
    assert "This operation changes the system" in page
    response = member_client.post(
        run_url, {"target": redis_target.pk, "param_pattern": "", "reason": ""}
    )
    assert "This field is required" in response.content.decode()
    response = post_confirmed(
        member_client,
        run_url,
        {"target": redis_target.pk, "param_pattern": "sess:*", "reason": "stale sessions"},
    )
    assert response.status_code == 302
    operation = Operation.objects.get()
    assert operation.reason == "stale sessions" and operation.params == {"pattern": "sess:*"}
    assert operation.incident_id == incident.pk
    response = post_confirmed(
        member_client, run_url, {"target": redis_target.pk, "param_pattern": "", "reason": "again"}
    )
    assert f"Clear cache (#{operation.pk}), queued" in response.content.decode()


def test_running_an_operation_needs_its_permission(client, teams, runbooks, redis_target):
    groups_load_defaults()
    viewer = get_user_model().objects.create_user("vic", password="pw-vic-123!", is_staff=True)
    viewer.groups.add(Group.objects.get(name="Viewers"))
    client.force_login(viewer)
    incident = incident_open(
        title="slow",
        severity="sev3",
        category="api",
        reporter=viewer,
        affected_systems=[redis_target],
        runbook_name="High API Response Times",
    )
    clear = IncidentStep.objects.get(incident=incident, text="Clear cache if needed")
    response = client.get(
        reverse("admin:incidents_incident_step_run", args=[incident.pk, clear.pk])
    )
    assert response.status_code == 403


def test_changelist_search_is_answered_by_the_trigram_indexes(member_client, teams, engineer):
    """The admin's search (icontains on title and symptoms) can use the pg_trgm indexes of
    migration 0003 instead of scanning every incident."""
    from django.contrib import admin
    from django.db import connection
    from django.test import RequestFactory

    assert connection.vendor == "postgresql", "the suite runs on PostgreSQL (make test)"
    incident_open(title="Disk full on db-1", severity="sev3", category="other", reporter=engineer)
    incident_open(title="API slow", severity="sev3", category="api", symptoms="disk latency")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'incidents_incident'"
            " AND indexname LIKE '%%trgm'"
        )
        assert sorted(r[0] for r in cursor.fetchall()) == [
            "incidents_incident_symptoms_trgm",
            "incidents_incident_title_trgm",
        ]
    model_admin = admin.site._registry[Incident]
    request = RequestFactory().get("/")
    request.user = engineer
    queryset, _ = model_admin.get_search_results(request, Incident.objects.all(), "disk")
    assert sorted(i.title for i in queryset) == ["API slow", "Disk full on db-1"]
    with connection.cursor() as cursor:
        # Two rows are cheaper to scan than any index; forbid that so the plan shows
        # whether the index can answer the admin's own SQL at all.
        cursor.execute("SET LOCAL enable_seqscan = off")
        # Nor walk the ordering's btree and filter each row (the planner's choice for two
        # rows once statistics exist); a GIN index is read by a bitmap scan only.
        cursor.execute("SET LOCAL enable_indexscan = off")
        sql, params = queryset.query.sql_with_params()
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(r[0] for r in cursor.fetchall())
    assert "incidents_incident_title_trgm" in plan and "incidents_incident_symptoms_trgm" in plan


def test_a_search_matching_more_than_the_count_limit_says_more_than(
    member_client, teams, engineer, monkeypatch
):
    """A search counts its matches only up to a limit (counting 20,000 trigram matches costs
    more than the page): beyond it the page says "more than", within it the exact number;
    filters alone are counted exactly (their deep pages stay reachable)."""
    from incidents.admin import display

    monkeypatch.setattr(display, "COUNT_MATCHES_UP_TO", 3)
    for n in range(5):
        incident_open(title=f"Disk full {n}", severity="sev3", category="other")
    incident_open(title="API slow", severity="sev3", category="api")
    url = reverse("admin:incidents_incident_changelist")
    many = member_client.get(url + "?q=disk").content.decode()
    assert "more than 3 results" in many
    assert "more than 3 incidents" in many
    assert many.count('<td class="field-title">') == 5  # fewer than a page: every row
    few = member_client.get(url + "?q=api").content.decode()
    assert "1 result" in few and "more than" not in few
    # Nor does the actions bar offer "Select all 3": an action would run on every match.
    superuser = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    member_client.force_login(superuser)
    acting = member_client.get(url + "?q=disk")
    assert 'name="action"' in acting.content.decode()
    assert "Select all 3" not in acting.content.decode()
    origins = {template.origin.name for template in acting.templates}
    assert any(name.endswith("admin/incidents/incident/actions.html") for name in origins)
    filtered = member_client.get(url + "?category__exact=other").content.decode()
    assert "5 incidents" in filtered and "more than" not in filtered


@pytest.mark.docker
def test_evidence_downloads_are_what_was_captured_and_are_audited(
    client, engineer, teams, run_container, docker_engine, settings, tmp_path
):
    from django.contrib.auth import get_user_model

    from opsportal.audit.models import AuditRecord
    from opsportal.operations.models import Evidence, OperationStatus
    from opsportal.operations.services import operation_request
    from opsportal.operations.tasks import execute_operation

    groups_load_defaults()
    # Downloading evidence is the Security team's (tests/incidents/test_evidence_download.py
    # tries every role).
    engineer.groups.add(Group.objects.get(name="Security team"))
    client.force_login(engineer)
    settings.MEDIA_ROOT = tmp_path
    container = run_container(["sh", "-c", "echo intruder > /tmp/dropped; echo pwned; sleep 600"])
    deadline = time.monotonic() + 15
    while b"pwned" not in container.logs() and time.monotonic() < deadline:
        time.sleep(0.2)
    incident = incident_open(
        title="intrusion on api",
        severity="sev2",
        category="security",
        reporter=engineer,
        affected_systems=[docker_engine],
    )
    operation = operation_request(
        kind="evidence_preserve",
        target=docker_engine,
        params={"container": container.name, "export_filesystem": True},
        actor=engineer,
        reason="preserve before isolating",
        incident=incident,
    )
    execute_operation.apply(args=[operation.pk])
    operation.refresh_from_db()
    assert operation.status == OperationStatus.SUCCEEDED, operation.error
    items = list(Evidence.objects.filter(incident=incident))
    assert {e.name for e in items} == {"logs.txt", "inspect.json", "diff.json", "filesystem.tar"}

    page = client.get(reverse("admin:incidents_incident_change", args=[incident.pk]))
    for item in items:
        url = reverse("admin:incidents_incident_evidence", args=[incident.pk, item.pk])
        assert f'href="../evidence/{item.pk}/"' in page.content.decode()
        response = client.get(url)
        assert response.status_code == 200
        assert response["Content-Disposition"] == f'attachment; filename="{item.name}"'
        downloaded = b"".join(response.streaming_content)
        # What is served is byte for byte what was captured, and matches the custody record.
        assert downloaded == (tmp_path / item.path).read_bytes()
        assert len(downloaded) == item.size_bytes
        assert hashlib.sha256(downloaded).hexdigest() == item.sha256
        record = AuditRecord.objects.filter(
            object_type="operations.evidence", object_id=str(item.pk)
        ).get()
        assert record.actor_id == engineer.pk
        assert record.message == (
            f"Evidence {item.name} (sha256 {item.sha256}) of incident #{incident.pk} downloaded"
        )
    assert b"pwned" in (tmp_path / next(e for e in items if e.name == "logs.txt").path).read_bytes()

    # Evidence of another incident is not served under this one's address.
    other = incident_open(title="other", severity="sev4", category="other", reporter=engineer)
    response = client.get(
        reverse("admin:incidents_incident_evidence", args=[other.pk, items[0].pk])
    )
    assert response.status_code == 404

    # A file gone from the evidence store is refused with a message (no 500) and the
    # attempt stays in the custody trail.
    lost = next(e for e in items if e.name == "diff.json")
    (tmp_path / lost.path).unlink()
    response = client.get(
        reverse("admin:incidents_incident_evidence", args=[incident.pk, lost.pk]), follow=True
    )
    assert response.status_code == 200
    assert response.redirect_chain[-1][0].endswith(
        reverse("admin:incidents_incident_change", args=[incident.pk])
    )
    shown = [str(m) for m in response.context["messages"]]
    assert any("cannot be read from the evidence store" in m for m in shown), shown
    refused = AuditRecord.objects.filter(
        object_type="operations.evidence", object_id=str(lost.pk), outcome="failure"
    ).get()
    assert refused.actor_id == engineer.pk and "Download refused" in refused.message

    # A Viewer sees that the evidence exists but gets no link and 403; the refused attempt
    # is in the custody trail too.
    viewer = get_user_model().objects.create_user("vic", "vic@example.com", "pw-vic-123!")
    viewer.is_staff = True
    viewer.save()
    viewer.groups.add(Group.objects.get(name="Viewers"))
    client.force_login(viewer)
    page = client.get(reverse("admin:incidents_incident_change", args=[incident.pk]))
    assert page.status_code == 200 and "logs.txt" in page.content.decode()
    assert 'href="../evidence/' not in page.content.decode()
    response = client.get(
        reverse("admin:incidents_incident_evidence", args=[incident.pk, items[0].pk])
    )
    assert response.status_code == 403
    refused = AuditRecord.objects.filter(
        object_type="operations.evidence", object_id=str(items[0].pk), outcome="failure"
    ).get()
    assert refused.actor_id == viewer.pk and "Download refused" in refused.message


def test_post_incident_review_with_action_items_on_the_incident_page(
    member_client, teams, engineer
):
    from incidents.models import ActionItem
    from incidents.services import incident_resolve
    from opsportal.audit.models import AuditRecord

    incident = incident_open(
        title="checkout down",
        severity="sev2",
        category="api",
        team=teams[Responsibility.DEVOPS],
        reporter=engineer,
    )
    incident_resolve(incident=incident, actor=engineer, resolution="rolled back")
    url = reverse("admin:incidents_incident_change", args=[incident.pk])
    page = member_client.get(url)
    assert "follow-up action item" in page.content.decode()
    # No blank row rendered by default; the empty form is the "add another" template.
    formset = page.context["inline_admin_formsets"][0].formset
    assert formset.prefix == "action_items" and formset.total_form_count() == 0

    def post(items):
        data = {
            "title": incident.title,
            "category": "api",
            "team": teams[Responsibility.DEVOPS].pk,
            "commander": "",
            "symptoms": "",
            "impact": "checkout unavailable for 20 minutes",
            "summary": "",
            "resolution": "rolled back",
            "review_what_happened": "A deploy exhausted the connection pool.",
            "review_root_cause": "Pool size not raised with the new worker count.",
            "action_items-TOTAL_FORMS": str(len(items)),
            "action_items-INITIAL_FORMS": "0",
            "action_items-MIN_NUM_FORMS": "0",
            "action_items-MAX_NUM_FORMS": "1000",
            "_continue": "Save and continue editing",
        }
        for n, item in enumerate(items):
            data.update({f"action_items-{n}-{k}": v for k, v in item.items()})
        return member_client.post(url, data)

    # An action item without an owner is refused on the form, and nothing is saved.
    response = post([{"description": "Alert on pool usage", "owner": "", "due_date": "2030-01-31"}])
    assert response.status_code == 200
    assert "This field is required" in response.content.decode()
    assert not ActionItem.objects.exists()

    response = post(
        [
            {
                "description": "Alert on pool usage over 80%",
                "owner": engineer.pk,
                "due_date": "2030-01-31",
            },
            {
                "description": "Size the pool from the worker count",
                "owner": engineer.pk,
                "due_date": "2030-02-15",
            },
        ]
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    items = list(incident.action_items.order_by("due_date"))
    assert [(i.description, i.owner_id, str(i.due_date), i.done) for i in items] == [
        ("Alert on pool usage over 80%", engineer.pk, "2030-01-31", False),
        ("Size the pool from the worker count", engineer.pk, "2030-02-15", False),
    ]
    # Each action item is in the model change history, with who added it.
    created = AuditRecord.objects.filter(object_type="incidents.actionitem", action="create")
    assert created.count() == 2 and {r.actor_id for r in created} == {engineer.pk}
    # With the review written the SEV2 incident can close.
    response = member_client.post(
        reverse("admin:incidents_incident_transition", args=[incident.pk, "close"]), follow=True
    )
    assert "close done" in response.content.decode()
    incident.refresh_from_db()
    assert incident.status == Status.CLOSED
    page = member_client.get(url).content.decode()
    assert "Alert on pool usage over 80%" in page


def test_incident_page_shows_time_to_acknowledge_in_words(staff_client, teams):
    import datetime as dt

    from incidents.services import incident_acknowledge

    incident = incident_open(title="Slow API", severity="sev3", category="api")
    Incident.objects.filter(pk=incident.pk).update(
        detected_at=incident.detected_at - dt.timedelta(minutes=12, seconds=5)
    )
    incident.refresh_from_db()
    incident_acknowledge(incident=incident, actor=None)
    page = staff_client.get(reverse("admin:incidents_incident_change", args=[incident.pk]))
    text = page.content.decode()
    assert "12 min 5 s" in text or "12 min 6 s" in text
    assert "Time to resolve" in text


def test_changelist_filters_by_severity_category_team_and_date(member_client, teams, engineer):
    import datetime as dt

    from django.utils import timezone

    old = incident_open(
        title="old db incident",
        severity="sev1",
        category="database",
        team=teams[Responsibility.DEVOPS],
        reporter=engineer,
    )
    Incident.objects.filter(pk=old.pk).update(detected_at=timezone.now() - dt.timedelta(days=40))
    incident_open(title="security today", severity="sev4", category="security", reporter=engineer)
    incident_open(
        title="container today",
        severity="sev2",
        category="container",
        team=teams[Responsibility.DEVOPS],
        reporter=engineer,
    )
    url = reverse("admin:incidents_incident_changelist")

    def titles(query):
        response = member_client.get(url + query)
        assert response.status_code == 200
        return sorted(i.title for i in response.context["cl"].result_list)

    assert titles("?severity__exact=sev1") == ["old db incident"]
    assert titles("?category__exact=security") == ["security today"]
    assert titles(f"?team__id__exact={teams[Responsibility.DEVOPS].pk}") == [
        "container today",
        "old db incident",
    ]
    # As the admin's own date filter links: an aware midnight, URL-encoded.
    from urllib.parse import urlencode

    midnight = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    since = "?" + urlencode({"detected_at__gte": str(midnight - dt.timedelta(days=7))})
    assert titles(since) == ["container today", "security today"]


def test_a_threshold_of_minus_five_on_a_step_is_refused_with_the_reason(
    member_client, teams, engineer, runbooks, postgres_target
):
    """Bad input from the incident page: the run page says exactly what is wrong, and no
    operation row (nothing to be left running) is written."""
    engineer.groups.add(Group.objects.get(name="Database admins"))
    incident = incident_open(
        title="too many connections",
        severity="sev3",
        category="database",
        reporter=engineer,
        affected_systems=[postgres_target],
        runbook_name="Database Connection Issues",
    )
    kill = IncidentStep.objects.get(incident=incident, text="Kill long-running queries")
    run_url = reverse("admin:incidents_incident_step_run", args=[incident.pk, kill.pk])
    response = member_client.post(
        run_url,
        {"target": postgres_target.pk, "param_min_seconds": "-5", "reason": "pool full"},
    )
    assert response.status_code == 200
    # The typed field says it, next to the field.
    assert "Ensure this value is greater than or equal to 0" in response.content.decode()
    assert not Operation.objects.exists()
