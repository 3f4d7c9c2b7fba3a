"""One Docker engine registered twice: refused when the address is the same, flagged by the
engine's own ID when it is reached two ways (its socket and ssh://), and its containers
then raise one incident, not two."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError

from incidents.models import Incident
from opsportal.defaults import load_defaults
from opsportal.monitoring import services as monitoring
from opsportal.monitoring.models import AlertRule, CollectionSchedule
from opsportal.systems.models import DockerEngine, engine_address
from opsportal.systems.services import system_test_connection, systems_check_due
from tests.monitoring.conftest import wait_until

pytestmark = pytest.mark.django_db


def engine_form(name: str, base_url: str) -> dict:
    return {
        "name": name,
        "description": "",
        "critical": "on",
        "check_interval_seconds": "30",
        "base_url": base_url,
        "tls_verify": "on",
        "tls_ca_cert": "",
        "tls_client_cert": "",
        "tls_client_key": "",
        "timeout_seconds": "5",
        "container_name": "",
    }


@pytest.fixture
def devops_client(client):
    """Registering engines is the DevOps role's job (the seeded groups)."""
    load_defaults()
    user = get_user_model().objects.create_user("devon", password="pw-devon-123!", is_staff=True)
    user.groups.add(Group.objects.get(name="DevOps"))
    client.force_login(user)
    return client


def test_the_same_socket_registered_again_is_refused_in_the_admin(devops_client, docker_host):
    first = devops_client.post(
        "/admin/systems/dockerengine/add/", engine_form("platform", docker_host)
    )
    assert first.status_code == 302
    path = docker_host.removeprefix("unix://")
    same = "unix://" + path.replace("/docker.sock", "//docker.sock")  # another spelling
    again = devops_client.post("/admin/systems/dockerengine/add/", engine_form("platform-2", same))
    assert again.status_code == 200
    page = again.content.decode()
    assert "This Docker engine is already registered as &#x27;platform&#x27;" in page
    assert DockerEngine.objects.count() == 1
    # Editing the first registration is not a duplicate of itself.
    engine = DockerEngine.objects.get()
    edited = devops_client.post(
        f"/admin/systems/dockerengine/{engine.pk}/change/",
        {**engine_form("platform", docker_host), "description": "the web platform"},
    )
    assert edited.status_code == 302


def test_the_same_address_spelled_differently_is_refused(db, tls_engine_material):
    url = tls_engine_material["base_url"]  # tcp://127.0.0.1:<port>
    DockerEngine.objects.create(name="swarm", **tls_engine_material)
    port = url.rsplit(":", 1)[1]
    for spelling in (f"tcp://LOCALHOST:{port}", f"https://127.0.0.1:{port}/"):
        twin = DockerEngine(name="swarm-2", **{**tls_engine_material, "base_url": spelling})
        with pytest.raises(ValidationError, match="already registered as 'swarm'"):
            twin.full_clean()
    other_port = DockerEngine(name="other", base_url="tcp://127.0.0.1:1")
    other_port.full_clean()  # a different address is fine


def test_address_normalising():
    assert engine_address("unix:///var/run/../run/docker.sock") == engine_address(
        "unix:///run/docker.sock"
    )
    assert engine_address("tcp://Docker.Example.com") == "tcp:docker.example.com:2375"
    assert engine_address("ssh://root@host") == engine_address("ssh://deploy@HOST:22")
    assert engine_address("tcp://10.0.0.5:2376") != engine_address("tcp://10.0.0.6:2376")


@pytest.fixture
def ssh_url(tmp_path, monkeypatch) -> str:
    """The test engine's ssh:// address, with the prepared ~/.ssh as this worker's home."""
    url, home = (
        os.environ.get("OPSPORTAL_TEST_DOCKER_SSH_URL"),
        os.environ.get("OPSPORTAL_TEST_SSH_HOME"),
    )
    if not url or not home:
        pytest.exit("The ssh:// Docker engine is not configured: run `make test`.", returncode=2)
    worker_home = tmp_path / "home"
    shutil.copytree(Path(home), worker_home)
    monkeypatch.setenv("HOME", str(worker_home))
    return url


@pytest.mark.docker
def test_one_engine_reached_two_ways_is_flagged_and_raises_one_incident(
    docker_engine, ssh_url, run_container, devops_client
):
    via_ssh = DockerEngine.objects.create(name="test-engine-ssh", base_url=ssh_url)
    via_ssh.full_clean()  # a different address: the admin would accept it

    first = system_test_connection(system=docker_engine)
    second = system_test_connection(system=via_ssh)
    assert first.ok and second.ok, (first.message, second.message)
    docker_engine.refresh_from_db()
    via_ssh.refresh_from_db()
    assert docker_engine.engine_id and docker_engine.engine_id == via_ssh.engine_id
    assert "Registered twice" in second.message and "'test-engine'" in second.message
    assert "monitored through 'test-engine' only" in via_ssh.last_check_message
    first = system_test_connection(system=docker_engine)  # now that both have been seen
    assert "Also registered as 'test-engine-ssh'" in first.message
    systems_check_due()  # the scheduled check says the same
    via_ssh.refresh_from_db()
    assert "Registered twice" in via_ssh.last_check_message
    page = devops_client.get(f"/admin/systems/dockerengine/{via_ssh.pk}/change/").content.decode()
    assert "Registered twice" in page and docker_engine.engine_id in page

    looping = run_container(["sh", "-c", "sleep 1; exit 1"], restart_policy={"Name": "always"})
    rule = AlertRule.objects.get(name="Container restarting repeatedly")

    def opened():
        CollectionSchedule.objects.update(next_due_at=None)
        monitoring.collection_run_due()
        return [
            i
            for i in Incident.objects.filter(
                alert_fingerprint__startswith=f"monitoring:rule-{rule.pk}:"
            )
            if i.alert_fingerprint.endswith(f":{looping.name}")
        ]

    (incident,) = wait_until(opened, timeout=90, step=1)
    for _ in range(2):  # more rounds: still one incident, from the first registration
        assert [i.pk for i in opened()] == [incident.pk]
    assert f"system-{docker_engine.pk}:" in incident.alert_fingerprint
    assert incident.title.endswith(f"on test-engine ({looping.name})")
    # The second registration is still watched for answering at all.
    from opsportal.monitoring.models import LatestValue

    up = LatestValue.objects.get(system=via_ssh, metric="up")
    assert up.value == 1.0
    assert not LatestValue.objects.filter(system=via_ssh, subject=looping.name).exists()


@pytest.mark.docker
def test_a_second_registration_never_checked_is_identified_before_its_first_collection(
    docker_engine, ssh_url, run_container
):
    run_container(["sleep", "300"])
    via_ssh = DockerEngine.objects.create(name="test-engine-ssh", base_url=ssh_url)
    CollectionSchedule.objects.update(next_due_at=None)
    monitoring.collection_run_due()
    via_ssh.refresh_from_db()
    assert via_ssh.engine_id and via_ssh.first_registration == docker_engine
    from opsportal.monitoring.models import LatestValue

    assert not LatestValue.objects.filter(system=via_ssh, metric="container_running").exists()
    assert LatestValue.objects.filter(system=docker_engine, metric="container_running").exists()
