"""How the portal reaches a Docker engine, and what it says when it cannot.

`client()` opens a DockerClient over unix://, tcp:// (with the engine's TLS material, written
to a private temporary directory only while the client is open) or ssh:// (paramiko, with the
worker's own ~/.ssh), with the engine's timeout; `translate_error()` turns the SDK's,
requests' and paramiko's exceptions into the adapter errors whose message names the engine.
Every other module of this package opens its client here.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import docker
import docker.constants
import docker.errors
import docker.tls
import paramiko
import requests
from paramiko.ssh_exception import NoValidConnectionsError

from opsportal.systems.adapters.errors import (
    AdapterError,
    AuthenticationFailed,
    NotFound,
    OperationFailed,
    TimedOut,
    Unreachable,
)

if TYPE_CHECKING:
    from opsportal.systems.models import DockerEngine


def translate_error(engine: DockerEngine, exc: Exception) -> AdapterError:
    where = f"Docker engine {engine.name} at {engine.base_url}"
    if isinstance(exc, AdapterError):
        return exc
    if isinstance(exc, docker.errors.NotFound):
        return NotFound(f"{where}: {exc.explanation or 'not found'}")
    if isinstance(exc, requests.exceptions.Timeout) or "timed out" in str(exc).lower():
        return TimedOut(f"{where} did not answer within {engine.timeout_seconds:g} s.")
    if isinstance(exc, docker.errors.APIError):
        if exc.status_code in (401, 403):
            return AuthenticationFailed(f"{where} refused access: {exc.explanation}")
        return OperationFailed(f"{where} refused the request: {exc.explanation or exc}")
    text = str(exc)
    if isinstance(exc, paramiko.AuthenticationException):
        return AuthenticationFailed(f"{where} refused the SSH key of this worker ({text}).")
    if isinstance(exc, paramiko.SSHException) and "known_hosts" in text:
        return AuthenticationFailed(
            f"{where}: its SSH host key is not in this worker's ~/.ssh/known_hosts; add it "
            "(ssh-keyscan) after checking its fingerprint."
        )
    if isinstance(exc, NoValidConnectionsError):
        return Unreachable(f"{where} is not reachable: SSH connection refused.")
    if isinstance(exc, paramiko.SSHException | EOFError):
        return Unreachable(f"{where}: SSH failed ({_first_line(text)}).")
    if "FileNotFoundError" in text or "No such file" in text:
        return Unreachable(f"{where} is not reachable: its socket does not exist.")
    if "Connection refused" in text or "ConnectionRefused" in text:
        return Unreachable(f"{where} is not reachable: connection refused.")
    if "PermissionError" in text or "Permission denied" in text:
        return AuthenticationFailed(f"{where}: permission denied on its socket.")
    if isinstance(exc, requests.exceptions.SSLError) or "SSL" in text:
        return AuthenticationFailed(f"{where}: TLS handshake failed ({_first_line(text)}).")
    if isinstance(exc, requests.exceptions.ConnectionError | docker.errors.DockerException):
        return Unreachable(f"{where} is not reachable: {_first_line(text)}")
    return OperationFailed(f"{where}: {_first_line(text)}")


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:300] if text.strip() else "unknown error"


@contextmanager
def client(engine: DockerEngine) -> Iterator[docker.DockerClient]:
    """A DockerClient for the engine; TLS material lives in a private temp dir meanwhile."""
    with tempfile.TemporaryDirectory(prefix="opsportal-tls-") as tls_dir:
        tls = _tls_config(engine, tls_dir)
        try:
            docker_client = docker.DockerClient(
                base_url=engine.base_url,
                timeout=engine.timeout_seconds,
                tls=tls,
                # ssh:// goes through paramiko, which reads the worker's ~/.ssh (config,
                # keys, known_hosts) and refuses hosts whose key is not known.
                use_ssh_client=False,
                version=docker.constants.MINIMUM_DOCKER_API_VERSION,
            )
            # The engine is addressed directly: no proxy from the environment, and no
            # REQUESTS_CA_BUNDLE overriding the engine's own CA (requests lets the
            # environment win over the session's `verify`). Negotiate the API version after.
            docker_client.api.trust_env = False
            docker_client.api._version = docker_client.api._retrieve_server_version()
        except Exception as exc:
            raise translate_error(engine, exc) from exc
        try:
            yield docker_client
        except AdapterError:
            raise
        except Exception as exc:
            raise translate_error(engine, exc) from exc
        finally:
            docker_client.close()


def _tls_config(engine: DockerEngine, tls_dir: str) -> docker.tls.TLSConfig | bool:
    if not engine.base_url.startswith("tcp://") or not (
        engine.tls_ca_cert or engine.tls_client_cert
    ):
        return False

    def write(name: str, content: str) -> str | None:
        if not content:
            return None
        path = os.path.join(tls_dir, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(content)
        return path

    ca = write("ca.pem", engine.tls_ca_cert)
    cert = write("cert.pem", engine.tls_client_cert)
    key = write("key.pem", engine.tls_client_key)
    return docker.tls.TLSConfig(
        client_cert=(cert, key) if cert and key else None,
        ca_cert=ca,
        verify=ca if engine.tls_verify and ca else engine.tls_verify,
    )
