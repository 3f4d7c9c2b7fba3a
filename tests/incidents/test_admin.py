"""The admin workflow with the test client: opening, transitions, steps, run page."""

import pytest
from django.contrib.auth.models import Group, Permission
from django.urls import reverse

from incidents.models import Incident, IncidentStep, Runbook, Status, TimelineKind
from incidents.services import incident_open
from opsportal.access import groups_load_defaults
from opsportal.operations.models import Operation
from opsportal.people.models import Responsibility


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
        run_url, {"target": redis_target.pk, "params": "{}", "reason": ""}
    )
    assert "This field is required" in response.content.decode()
    response = member_client.post(
        run_url,
        {"target": redis_target.pk, "params": '{"pattern": "sess:*"}', "reason": "stale sessions"},
    )
    assert response.status_code == 302
    operation = Operation.objects.get()
    assert operation.reason == "stale sessions" and operation.params == {"pattern": "sess:*"}
    assert operation.incident_id == incident.pk
    response = member_client.post(
        run_url, {"target": redis_target.pk, "params": "{}", "reason": "again"}
    )
    assert f"Clear cache (#{operation.pk}), queued" in response.content.decode()


def test_running_an_operation_needs_its_permission(client, teams, engineer, runbooks, redis_target):
    groups_load_defaults()
    engineer.groups.add(Group.objects.get(name="Viewers"))
    engineer.user_permissions.add(Permission.objects.get(codename="view_incident"))
    client.force_login(engineer)
    incident = incident_open(
        title="slow",
        severity="sev3",
        category="api",
        reporter=engineer,
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

    if connection.vendor != "postgresql":
        pytest.skip("trigram indexes exist on PostgreSQL only")
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
        sql, params = queryset.query.sql_with_params()
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(r[0] for r in cursor.fetchall())
    assert "incidents_incident_title_trgm" in plan and "incidents_incident_symptoms_trgm" in plan
