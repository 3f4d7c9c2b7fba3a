"""The admin side, as the seeded roles use it: DevOps maps a component to systems and reads
how its state is derived; a responder publishes an incident and posts public updates from
the public incident's page; a Viewer can do neither."""

from __future__ import annotations

from django.test import Client

from incidents.models import PublicIncident
from incidents.services import incident_open
from opsportal.statuspage.models import Component
from opsportal.systems.models import HttpEndpoint


def test_devops_maps_a_component_and_reads_its_rules(client, devops, components):
    endpoint = HttpEndpoint.objects.create(
        name="edge", url="http://127.0.0.1:9/", timeout_seconds=1
    )
    client.force_login(devops)
    api = components["API"]
    response = client.post(
        f"/admin/statuspage/component/{api.pk}/change/",
        {"name": "API", "description": "The REST API.", "position": 0, "systems": [endpoint.pk]},
    )
    assert response.status_code == 302, response.content[:2000]
    assert [s.pk for s in Component.objects.get(pk=api.pk).systems.all()] == [endpoint.pk]
    page = client.get(f"/admin/statuspage/component/{api.pk}/change/").content.decode()
    assert "How the state is derived" in page and "container_running = 0" in page


def test_a_responder_publishes_and_posts_updates_from_the_admin(client, responder, components):
    incident = incident_open(
        title="internal detail", severity="sev2", category="api", reporter=responder
    )
    client.force_login(responder)
    incident_page = f"/admin/incidents/incident/{incident.pk}/change/"
    assert (
        f"/admin/incidents/publicincident/add/?incident={incident.pk}"
        in client.get(incident_page).content.decode()
    )
    response = client.post(
        "/admin/incidents/publicincident/add/",
        {
            "incident": incident.pk,
            "title": "Slow API",
            "components": [components["API"].pk],
            "component_state": "degraded",
            "updates-TOTAL_FORMS": 0,
            "updates-INITIAL_FORMS": 0,
        },
    )
    assert response.status_code == 302, response.content[:3000]
    public = PublicIncident.objects.get(incident=incident)
    assert list(public.components.all()) == [components["API"]]
    assert (
        f"/admin/incidents/publicincident/{public.pk}/change/"
        in client.get(incident_page).content.decode()
    )
    page = client.get(f"/admin/incidents/publicincident/{public.pk}/change/").content.decode()
    assert "Post a public update" in page
    response = client.post(
        f"/admin/incidents/publicincident/{public.pk}/post-update/",
        {"status": "investigating", "message": "Requests are slow; we are on it."},
    )
    assert response.status_code == 302
    assert public.updates.get().message == "Requests are slow; we are on it."
    shown = Client().get(f"/status/incidents/{incident.pk}/").content.decode()
    assert "Requests are slow; we are on it." in shown and "internal detail" not in shown


def test_a_viewer_can_neither_publish_nor_post(client, viewer, responder, components):
    incident = incident_open(title="x", severity="sev3", category="api", reporter=responder)
    from incidents.services import incident_publish

    public = incident_publish(incident=incident, title="Slow API", actor=responder)
    client.force_login(viewer)
    assert client.get("/admin/incidents/publicincident/add/").status_code == 403
    response = client.post(
        f"/admin/incidents/publicincident/{public.pk}/post-update/",
        {"status": "investigating", "message": "nope"},
    )
    assert response.status_code == 403
    assert not public.updates.exists()


def test_components_are_exported_with_the_configuration(components):
    from opsportal.configuration import configuration_dump

    endpoint = HttpEndpoint.objects.create(
        name="edge", url="http://127.0.0.1:9/", timeout_seconds=1
    )
    components["API"].systems.set([endpoint])
    files = configuration_dump()
    (name,) = [n for n in files if "statuspage" in n and "component" in n]
    assert '"API"' in files[name] and '"edge"' in files[name]
    assert "operational" not in files[name]  # derived state is not configuration
