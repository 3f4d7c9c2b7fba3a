"""API clients: a user in one of the seeded role groups (load_defaults) with a personal API
token made through the service, sending it the way a pipeline does."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client

from opsportal.api.services import api_token_create
from opsportal.defaults import load_defaults


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
