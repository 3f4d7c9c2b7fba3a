"""A Docker engine reached over ssh:// (a real sshd on loopback in front of the test engine).

Like the docker CLI, the adapter uses the worker's ~/.ssh: its key, its ssh config and its
known_hosts; an unknown host key is refused rather than trusted on first use.
"""

import os
import shutil
from pathlib import Path

import pytest

from opsportal.systems.adapters import docker_engine as docker_adapter
from opsportal.systems.adapters.errors import AuthenticationFailed, Unreachable
from opsportal.systems.models import DockerEngine
from tests import realsystems

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def ssh_setup() -> tuple[str, Path]:
    url = os.environ.get("OPSPORTAL_TEST_DOCKER_SSH_URL")
    home = os.environ.get("OPSPORTAL_TEST_SSH_HOME")
    if not url or not home:
        pytest.exit("The ssh:// Docker engine is not configured: run `make test`.", returncode=2)
    return url, Path(home)


@pytest.fixture
def worker_home(ssh_setup, tmp_path, monkeypatch) -> Path:
    """A copy of the prepared ~/.ssh as this worker's home."""
    home = tmp_path / "home"
    shutil.copytree(ssh_setup[1], home)
    monkeypatch.setenv("HOME", str(home))
    return home


def test_ssh_engine_answers(ssh_setup, worker_home):
    engine = DockerEngine.objects.create(name="ssh-engine", base_url=ssh_setup[0])
    result = docker_adapter.ping(engine)
    assert result.details["server_version"]
    assert result.details["containers_running"] is not None


def test_unknown_host_key_is_refused(ssh_setup, worker_home):
    (worker_home / ".ssh" / "known_hosts").write_text("")
    engine = DockerEngine(name="ssh-engine", base_url=ssh_setup[0])
    with pytest.raises(AuthenticationFailed) as error:
        docker_adapter.ping(engine)
    assert "host key is not in this worker's ~/.ssh/known_hosts" in str(error.value)


def test_a_key_the_host_does_not_accept_is_refused(ssh_setup, worker_home):
    import subprocess

    key = worker_home / ".ssh" / "id_ed25519"
    key.unlink()
    (worker_home / ".ssh" / "id_ed25519.pub").unlink()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    engine = DockerEngine(name="ssh-engine", base_url=ssh_setup[0])
    with pytest.raises(AuthenticationFailed) as error:
        docker_adapter.ping(engine)
    assert "refused the SSH key" in str(error.value)


def test_closed_ssh_port_is_unreachable(worker_home):
    engine = DockerEngine(
        name="ssh-gone", base_url=f"ssh://root@127.0.0.1:{realsystems.free_port()}"
    )
    with pytest.raises(Unreachable) as error:
        docker_adapter.ping(engine)
    assert "SSH connection refused" in str(error.value)
