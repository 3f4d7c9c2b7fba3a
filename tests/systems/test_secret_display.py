"""Stored secrets are never rendered, not even read-only (issue 9, hole 1).

Readers (a Viewer, or any role on a kind of system it may not change) see "set" or "not
set"; editors get the empty write-only field. Tested with the seeded role groups.
"""

from __future__ import annotations

import re

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.test import RequestFactory

from opsportal.access import ROLE_PERMISSIONS
from opsportal.people.models import Responsibility, Team, WebhookChannel
from opsportal.systems.admin import PostgresDatabaseAdmin
from opsportal.systems.admin_secrets import SecretFieldsAdminMixin
from opsportal.systems.fields import secret_field_names
from opsportal.systems.models import DockerEngine, HttpEndpoint, PostgresDatabase, RedisCache
from opsportal.systems.services import system_save
from tests.systems.conftest import client_in_group

pytestmark = pytest.mark.django_db

SECRETS = {
    "postgresdatabase": "display-Pg-Secret-1",
    "rediscache": "display-Redis-Secret-2",
    "httpendpoint": "Bearer display-Api-Secret-3",
    "dockerengine": "-----BEGIN PRIVATE KEY-----\ndisplay-Tls-Secret-4\n-----END PRIVATE KEY-----",
    "webhookchannel": "https://hooks.example.com/services/T1/B1/display-Hook-Secret-5",
    # A database's second secret: the operator credential its operations may connect as.
    "postgres-operator": "display-Operator-Secret-6",
}


@pytest.fixture
def secret_holders(role_client) -> dict[str, object]:
    """One of each, registered through the services with a distinctive secret."""
    devops_team = Team.objects.get(responsibility=Responsibility.DEVOPS)
    return {
        "postgresdatabase": system_save(
            system=PostgresDatabase(
                name="pg",
                host="127.0.0.1",
                dbname="app",
                password=SECRETS["postgresdatabase"],
                operator_username="ops",
                operator_password=SECRETS["postgres-operator"],
            )
        ),
        "rediscache": system_save(system=RedisCache(name="cache", password=SECRETS["rediscache"])),
        "httpendpoint": system_save(
            system=HttpEndpoint(
                name="api",
                url="http://127.0.0.1:9/health",
                authorization_header=SECRETS["httpendpoint"],
            )
        ),
        "dockerengine": system_save(
            system=DockerEngine(
                name="engine",
                base_url="tcp://127.0.0.1:2376",
                tls_client_key=SECRETS["dockerengine"],
            )
        ),
        "webhookchannel": WebhookChannel.objects.create(
            name="devops-chat", team=devops_team, url=SECRETS["webhookchannel"]
        ),
        "team": devops_team,
    }


def secret_pieces() -> list[str]:
    # The distinctive part of each, so a partial rendering is caught too.
    return [re.search(r"display-\w+-Secret-\d", s).group(0) for s in SECRETS.values()]


@pytest.mark.parametrize("group", list(ROLE_PERMISSIONS))
def test_readers_see_set_and_editors_the_write_only_field(secret_holders, group):
    client = client_in_group(group)
    user = get_user_model().objects.get(groups__name=group)
    for model_name, obj in secret_holders.items():
        opts = obj._meta
        page = client.get(f"/admin/{opts.app_label}/{model_name}/{obj.pk}/change/")
        assert page.status_code == 200, (group, model_name)
        html = page.content.decode()
        for piece in secret_pieces():
            assert piece not in html, (group, model_name, piece)
        held_model = WebhookChannel if model_name == "team" else type(obj)
        may_change = user.has_perm(f"{opts.app_label}.change_{held_model._meta.model_name}")
        if may_change:
            for secret in secret_field_names(held_model):
                # An empty write-only field: a password input, or for a PEM key a text area.
                field = re.search(
                    rf'<input type="password" name="[\w-]*{secret}"[^>]*>'
                    rf'|<textarea name="[\w-]*{secret}"[^>]*>(.*?)</textarea>',
                    html,
                    re.S,
                )
                assert field, (group, model_name, secret)
                assert 'value="' not in field.group(0)
                assert not (field.group(1) or "").strip()
            if model_name not in ("team", "webhookchannel"):
                # Editors are told up front what re-pointing does to the stored secret.
                assert "drops it unless you enter it again in the same save" in html
        else:
            assert 'type="password"' not in html and "<textarea" not in html, (group, model_name)
            # Shown as whether one is stored.
            assert re.search(r"<(div|p|td)[^>]*>\s*set\s*</\1>", html), (group, model_name)


def test_a_viewer_sees_not_set_when_nothing_is_stored(role_client):
    database = system_save(system=PostgresDatabase(name="pg-open", host="127.0.0.1", dbname="x"))
    page = role_client("Viewers").get(f"/admin/systems/postgresdatabase/{database.pk}/change/")
    assert re.search(r'<div class="readonly">not set</div>', page.content.decode())
    assert "Clear the stored" not in page.content.decode()


def test_every_admin_of_a_model_with_secrets_uses_the_secrets_mixin():
    """A new model with a secret (SECRET_FIELDS or an encrypted field) is covered only if
    its admins, inlines included, go through the mixin."""
    checked = 0
    for model, model_admin in admin.site._registry.items():
        admins = [(model, model_admin)] + [(i.model, i) for i in model_admin.inlines]
        for held_model, candidate in admins:
            if secret_field_names(held_model):
                checked += 1
                assert issubclass(
                    candidate if isinstance(candidate, type) else type(candidate),
                    SecretFieldsAdminMixin,
                ), candidate
    assert checked >= 6  # four kinds of system, webhook channels, and the team inline


def test_a_secret_listed_as_read_only_or_as_a_column_shows_its_state(secret_holders):
    """Even for a superuser, and even if an admin names the secret itself."""

    class Careless(PostgresDatabaseAdmin):
        list_display = ["name", "password"]
        readonly_fields = [*PostgresDatabaseAdmin.readonly_fields, "password"]

    site = admin.AdminSite(name="careless")
    careless = Careless(PostgresDatabase, site)
    request = RequestFactory().get("/")
    request.user = get_user_model().objects.create_superuser("root", "r@example.com", "pw-1!")
    database = secret_holders["postgresdatabase"]

    assert careless.get_list_display(request) == ["name", "password_is_set"]
    assert "password" not in careless.get_readonly_fields(request, database)
    assert "password_is_set" in careless.get_readonly_fields(request, database)
    fields = [
        f for _, options in careless.get_fieldsets(request, database) for f in options["fields"]
    ]
    assert "password" not in fields and "clear_password" not in fields
    assert careless.password_is_set(database) == "set"

    response = careless.change_view(request, str(database.pk))
    html = response.render().content.decode()
    assert SECRETS["postgresdatabase"] not in html
    assert '<div class="readonly">set</div>' in html
