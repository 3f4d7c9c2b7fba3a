"""Operations are tied to their incident: a step acts only on the incident's affected systems
(and the containers on an affected Docker engine) unless the user may operate any system,
and a changing operation is refused once the incident is resolved or closed."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.urls import reverse

from incidents.models import IncidentStep
from incidents.services import (
    IncidentRefused,
    incident_close,
    incident_open,
    incident_resolve,
    incident_step_run,
)
from opsportal.access import ROLE_PERMISSIONS, groups_load_defaults
from opsportal.operations.models import Operation
from opsportal.systems.models import HttpEndpoint, RedisCache
from tests.previewing import post_confirmed


def staff_in(role: str):
    user = get_user_model().objects.create_user(
        role.lower().replace(" ", "-"), password="role-pass-123", is_staff=True
    )
    user.groups.add(Group.objects.get(name=role))
    return user


def target_choices(response) -> set[int]:
    return {
        int(str(value)) for value, _ in response.context["form"].fields["target"].choices if value
    }


def step(incident, text: str) -> IncidentStep:
    return IncidentStep.objects.get(incident=incident, text=text)


@pytest.fixture
def other_cache(db, redis_target):
    """A registered cache the incident does not list (production's, say)."""
    return RedisCache.objects.create(
        name="other-redis", host=redis_target.host, port=redis_target.port, db=15
    )


def test_a_step_acts_only_on_the_incidents_systems(
    client, teams, runbooks, redis_target, other_cache, superuser
):
    groups_load_defaults()
    incident = incident_open(
        title="slow",
        severity="sev3",
        category="api",
        affected_systems=[redis_target],
        runbook_name="High API Response Times",
    )
    clear = step(incident, "Clear cache if needed")
    url = reverse("admin:incidents_incident_step_run", args=[incident.pk, clear.pk])
    post = {"target": other_cache.pk, "params": "{}", "reason": "flush the other one"}
    runners = [
        role
        for role, grants in ROLE_PERMISSIONS.items()
        if ("operations", "run_cache_clear") in grants
    ]
    assert set(runners) == {"On-call engineers", "DevOps"}
    for role in ROLE_PERMISSIONS:
        user = staff_in(role)
        client.force_login(user)
        page = client.get(url)
        if role not in runners:
            assert page.status_code == 403, role
            continue
        # The form offers the incident's systems only …
        assert target_choices(page) == {redis_target.pk}, role
        response = client.post(url, post)
        assert response.status_code == 200, role
        assert "Select a valid choice" in response.content.decode(), role
        # … and the service refuses another system whoever calls it.
        with pytest.raises(IncidentRefused) as refused:
            incident_step_run(step=clear, actor=user, target=other_cache, reason="x")
        assert refused.value.message.startswith(
            f"other-redis is not one of the systems incident #{incident.pk} affects "
            f"(affected: {redis_target.name}). Add it to the incident's affected systems first"
        ), refused.value.message
        assert not Operation.objects.exists()

    # The incident's own system is fine.
    client.force_login(get_user_model().objects.get(username="devops"))
    response = post_confirmed(client, url, {**post, "target": redis_target.pk})
    assert response.status_code == 302
    assert Operation.objects.get().target_id == redis_target.pk

    # A superuser holds "operate any system": every system is offered and accepted.
    assert superuser.has_perm("operations.operate_any_system")
    client.force_login(superuser)
    assert {redis_target.pk, other_cache.pk} <= target_choices(client.get(url))
    response = post_confirmed(client, url, post)
    assert response.status_code == 302, response.content.decode()[:3000]
    assert Operation.objects.filter(target=other_cache, requested_by=superuser).exists()


def test_containers_on_an_affected_engine_are_in_scope(
    client, teams, runbooks, docker_engine, http_endpoint
):
    groups_load_defaults()
    on_engine = HttpEndpoint.objects.create(
        name="api-on-engine",
        url="http://127.0.0.1:9/health",
        docker_engine=docker_engine,
        container_name="api-1",
    )
    incident = incident_open(
        title="api down",
        severity="sev3",
        category="api",
        affected_systems=[docker_engine],
        runbook_name="High API Response Times",
    )
    logs = step(incident, "Review API logs")
    url = reverse("admin:incidents_incident_step_run", args=[incident.pk, logs.pk])
    client.force_login(staff_in("DevOps"))
    # The engine itself and the system running on it; not the endpoint elsewhere.
    assert target_choices(client.get(url)) == {docker_engine.pk, on_engine.pk}
    response = client.post(url, {"target": on_engine.pk, "param_lines": 200, "reason": ""})
    assert response.status_code == 302
    response = client.post(
        url,
        {"target": docker_engine.pk, "param_container": "anything", "param_lines": 200},
    )
    assert response.status_code == 302
    response = client.post(url, {"target": http_endpoint.pk, "param_lines": 200, "reason": ""})
    assert "Select a valid choice" in response.content.decode()
    assert Operation.objects.count() == 2


def test_changing_operations_are_refused_on_resolved_and_closed_incidents(
    client, teams, runbooks, redis_target, superuser
):
    groups_load_defaults()
    devops = staff_in("DevOps")
    client.force_login(devops)
    incident = incident_open(
        title="slow",
        severity="sev3",
        category="api",
        affected_systems=[redis_target],
        runbook_name="High API Response Times",
    )
    clear = step(incident, "Clear cache if needed")
    hit_rates = step(incident, "Check Redis cache hit rates")
    clear_url = reverse("admin:incidents_incident_step_run", args=[incident.pk, clear.pk])
    read_url = reverse("admin:incidents_incident_step_run", args=[incident.pk, hit_rates.pk])
    form = {"target": redis_target.pk, "params": "{}", "reason": "stale keys"}

    incident_resolve(incident=incident, actor=devops, resolution="cache fixed")
    page = client.get(clear_url).content.decode()
    assert "operations that change a system are refused on a resolved or closed" in page
    response = post_confirmed(client, clear_url, form)
    assert response.status_code == 200
    assert (
        f"Incident #{incident.pk} is resolved: Clear cache changes the system and is refused "
        "on a resolved or closed incident." in response.content.decode()
    )
    assert not Operation.objects.exists()
    # Reading still works after resolution (e.g. to confirm the fix holds).
    response = client.post(read_url, form)
    assert response.status_code == 302
    assert Operation.objects.get().kind == "cache_statistics"

    incident_close(incident=incident, actor=devops)
    for user in (devops, superuser):  # "operate any system" does not lift this
        client.force_login(user)
        response = post_confirmed(client, clear_url, form)
        assert response.status_code == 200
        assert f"Incident #{incident.pk} is closed: Clear cache changes the system" in (
            response.content.decode()
        )
    assert not Operation.objects.filter(kind="cache_clear").exists()


def test_scaling_a_swarm_service_needs_its_engine_among_the_affected_systems(
    teams, runbooks, docker_engine
):
    """A Swarm service is named on its engine: an affected system that merely runs on the
    engine does not bring every service of that engine into the incident's scope."""
    groups_load_defaults()
    devops = staff_in("DevOps")
    api = HttpEndpoint.objects.create(
        name="api-in-swarm",
        url="http://127.0.0.1:9/health",
        docker_engine=docker_engine,
        container_name="api-1",
    )
    incident = incident_open(
        title="api slow",
        severity="sev3",
        category="api",
        affected_systems=[api],
        runbook_name="High API Response Times",
    )
    scale = step(incident, "Scale containers if necessary")
    with pytest.raises(IncidentRefused, match="does not list as affected"):
        incident_step_run(
            step=scale,
            actor=devops,
            target=api,
            params={"swarm_service": "payments", "replicas": 3},
            reason="more capacity",
        )
    assert not Operation.objects.exists()
    incident.affected_systems.add(docker_engine)
    operation = incident_step_run(
        step=scale,
        actor=devops,
        target=api,
        params={"swarm_service": "payments", "replicas": 3},
        reason="more capacity",
    )
    assert operation.params["swarm_service"] == "payments"


@pytest.mark.parametrize("role", ["Viewers", "Database admins"])
def test_the_step_service_itself_refuses_roles_without_the_operations_permission(
    role, teams, runbooks, redis_target
):
    """Not only the page: a caller of the service with a role that may not clear caches
    (Viewers work no incident; Database admins do not clear caches) is refused."""
    groups_load_defaults()
    incident = incident_open(
        title="slow",
        severity="sev3",
        category="api",
        affected_systems=[redis_target],
        runbook_name="High API Response Times",
    )
    with pytest.raises(IncidentRefused, match="needs the permissions"):
        incident_step_run(
            step=step(incident, "Clear cache if needed"),
            actor=staff_in(role),
            target=redis_target,
            reason="stale keys",
        )
    assert not Operation.objects.exists()


def test_the_step_service_itself_asks_why_a_change_is_made(teams, runbooks, redis_target):
    """The rule the run page's form shows (a change needs a reason) is the service's: a
    caller without one is refused, as the API's "run this now" is, and nothing is queued."""
    groups_load_defaults()
    incident = incident_open(
        title="slow",
        severity="sev3",
        category="api",
        affected_systems=[redis_target],
        runbook_name="High API Response Times",
    )
    clear = step(incident, "Clear cache if needed")
    devops = staff_in("DevOps")
    for reason in ("", "   "):
        with pytest.raises(ValidationError) as refused:
            incident_step_run(step=clear, actor=devops, target=redis_target, reason=reason)
        assert refused.value.message_dict == {
            "reason": ["This operation changes the system: say why."]
        }
    assert not Operation.objects.exists()
    # A reading step needs none.
    incident_step_run(step=step(incident, "Check Redis cache hit rates"), actor=devops)
    assert Operation.objects.get().kind == "cache_statistics"
