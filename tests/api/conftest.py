"""API clients: a user in one of the seeded role groups (load_defaults) with a personal API
token made through the service, sending it the way a pipeline does; and the portal under
gunicorn on the test database, for clients outside the process (Schemathesis, curl)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client

from opsportal.api.services import api_token_create
from opsportal.defaults import load_defaults
from tests import realsystems
from tests.conftest import PROJECT_ROOT, _test_database_url


class ApiClient:
    """Requests with `Authorization: Bearer <token>` and JSON bodies."""

    def __init__(self, token: str | None):
        self.token = token
        self.client = Client()

    def _headers(self, extra):
        headers = dict(extra or {})
        if self.token is not None:
            headers.setdefault("Authorization", f"Bearer {self.token}")
        return headers

    def get(self, path, params=None, headers=None):
        return self.client.get(path, params or {}, headers=self._headers(headers))

    def post(self, path, body=None, *, raw=None, content_type="application/json", headers=None):
        data = raw if raw is not None else json.dumps(body if body is not None else {})
        return self.client.post(
            path, data, content_type=content_type, headers=self._headers(headers)
        )

    def patch(self, path, body=None, headers=None):
        return self.client.patch(
            path,
            json.dumps(body or {}),
            content_type="application/json",
            headers=self._headers(headers),
        )

    def request(self, method, path, body=None, headers=None):
        if method == "GET":
            return self.get(path, headers=headers)
        if method == "PATCH":
            return self.patch(path, body, headers=headers)
        return self.post(path, body, headers=headers)


def make_user(role: str, *, username: str | None = None):
    """A staff user in a seeded role group, or a superuser for role "superuser"."""
    User = get_user_model()
    name = username or "api-" + role.lower().replace(" ", "-")
    if role == "superuser":
        return User.objects.create_superuser(name, f"{name}@example.com", "pw-api-123!")
    user = User.objects.create_user(name, password="pw-api-123!", is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def api_client(db):
    """`api_client("DevOps", scope="read_write")` -> (ApiClient, user, token row)."""
    load_defaults()

    def build(role: str, *, scope: str = "read_write", username: str | None = None):
        user = make_user(role, username=username)
        token, plain = api_token_create(user=user, name=f"{role} test", scope=scope, actor=user)
        return ApiClient(plain), user, token

    return build


@pytest.fixture
def live_server_url(transactional_db, tmp_path):
    """The portal under gunicorn (production settings, two workers) on the test database."""
    from django.db import connection

    port = realsystems.free_port()
    log_path = tmp_path / "gunicorn.log"
    env = {
        **os.environ,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WEB_CONCURRENCY": "2",
        "WEB_ACCESS_LOG": "0",
        # Thousands of requests in a minute with one token: the throttle is tested elsewhere.
        "API_TOKEN_RATE": "1000000/minute",
        # The audit export's parts, small enough that a test follows several.
        "API_AUDIT_EXPORT_PART_ROWS": "3",
        "DATABASE_URL": _test_database_url(connection.settings_dict),
    }
    log = log_path.open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "opsportal.wsgi", "-c", "deploy/gunicorn.conf.py"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        realsystems.wait_for_port(port, timeout=30)
        yield f"http://127.0.0.1:{port}", log_path
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(20)
        log.close()
