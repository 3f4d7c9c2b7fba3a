"""Users in the runbook's role groups, as `load_defaults` seeds them."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from opsportal.defaults import load_defaults
from tests.signin import TwoFactorClient as Client


def client_in_group(group: str) -> Client:
    """A logged-in client for a new staff user in one seeded role group."""
    user = get_user_model().objects.create_user(
        f"user-{group.lower().replace(' ', '-')}", password="pw-role-123!", is_staff=True
    )
    user.groups.add(Group.objects.get(name=group))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def role_client(db):
    """`role_client("DevOps")`, with the role groups seeded by `load_defaults`."""
    load_defaults()
    return client_in_group
