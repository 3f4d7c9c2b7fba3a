"""A Docker engine reached over tcp:// with mutual TLS (a real second dockerd)."""

import pytest

from opsportal.systems.adapters import docker_engine as docker_adapter
from opsportal.systems.adapters.errors import AuthenticationFailed
from opsportal.systems.models import DockerEngine

pytestmark = pytest.mark.django_db


@pytest.fixture
def tls_material(tls_engine_material) -> dict[str, str]:
    return tls_engine_material


def test_tls_engine_with_client_certificate(tls_material):
    engine = DockerEngine.objects.create(name="tls-engine", **tls_material)
    engine.refresh_from_db()
    result = docker_adapter.ping(engine)
    assert result.details["server_version"]


def test_tls_engine_without_client_certificate_is_refused(tls_material):
    engine = DockerEngine(
        name="tls-no-client",
        base_url=tls_material["base_url"],
        tls_ca_cert=tls_material["tls_ca_cert"],
        timeout_seconds=3,
    )
    with pytest.raises(AuthenticationFailed) as error:
        docker_adapter.ping(engine)
    assert "TLS" in str(error.value)


def test_tls_engine_with_an_unknown_ca_is_refused(tls_material, tmp_path):
    import subprocess

    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=other-ca",
            "-keyout",
            str(tmp_path / "k.pem"),
            "-out",
            str(tmp_path / "ca.pem"),
        ],
        check=True,
        capture_output=True,
    )
    engine = DockerEngine(
        name="tls-wrong-ca",
        base_url=tls_material["base_url"],
        tls_ca_cert=(tmp_path / "ca.pem").read_text(),
        tls_client_cert=tls_material["tls_client_cert"],
        tls_client_key=tls_material["tls_client_key"],
        timeout_seconds=3,
    )
    with pytest.raises(AuthenticationFailed):
        docker_adapter.ping(engine)


def test_client_key_never_lingers_on_disk(tls_material, tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    engine = DockerEngine(name="tls-engine", **tls_material)
    docker_adapter.ping(engine)
    assert list(tmp_path.iterdir()) == []
