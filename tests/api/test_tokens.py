"""Personal API tokens: shown once, stored hashed with a visible prefix, scoped, expiring,
revocable, audited with source "API", dead when the owner is deactivated, and throttled per
token with 429 and Retry-After."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.core.cache import cache
from django.utils import timezone

from opsportal.api.models import ApiToken
from opsportal.api.services import api_token_create, api_token_revoke
from opsportal.audit.models import AuditRecord
from tests.api.conftest import ApiClient, make_user
from tests.signin import TwoFactorClient

pytestmark = pytest.mark.django_db

INCIDENT = {"title": "Deploy broke checkout", "severity": "sev3", "category": "api"}


def test_the_admin_shows_a_new_token_once_and_stores_only_its_hash(api_client):
    api_client("Viewers")  # seeds the role groups
    user = make_user("On-call engineers", username="token-maker")
    browser = TwoFactorClient()
    browser.force_login(user)
    # An expiry gone by is the field's error on the form, and no token is made.
    refused = browser.post(
        "/admin/api/apitoken/add/",
        {
            "name": "deploy pipeline",
            "scope": "read_write",
            "expires_at_0": "2020-01-01",
            "expires_at_1": "09:00:00",
        },
    )
    assert refused.status_code == 200
    assert refused.context["adminform"].form.errors == {
        "expires_at": ["The expiry is in the past: choose a time from now on, or none."]
    }
    assert not ApiToken.objects.filter(user=user).exists()
    response = browser.post(
        "/admin/api/apitoken/add/", {"name": "deploy pipeline", "scope": "read_write"}
    )
    assert response.status_code == 200
    page = response.content.decode()
    plain = re.search(r'<code id="api-token">(ops_[A-Za-z0-9_-]+)</code>', page)[1]
    token = ApiToken.objects.get(user=user)
    assert plain.startswith(f"ops_{token.prefix}_")
    assert token.key_hash != plain and plain not in token.key_hash
    assert not ApiToken.objects.filter(key_hash__contains=plain.split("_")[-1]).exists()
    # Never shown again: the token's own page and the list show the prefix only.
    listing = browser.get("/admin/api/apitoken/").content.decode()
    detail = browser.get(f"/admin/api/apitoken/{token.pk}/change/").content.decode()
    assert token.prefix in listing and plain not in listing and plain not in detail
    # Nobody edits a token's page.
    assert browser.post(f"/admin/api/apitoken/{token.pk}/change/", {}).status_code == 403
    # It works, as its owner.
    response = ApiClient(plain).post("/api/v1/incidents/", INCIDENT)
    assert response.status_code == 201
    assert response.json()["reporter"] == "token-maker"
    created = AuditRecord.objects.get(
        object_type="api.apitoken", object_id=str(token.pk), action="create"
    )
    assert (
        created.source == "api" and created.actor == user and "deploy pipeline" in created.message
    )


def test_each_user_sees_and_revokes_only_their_own_tokens(api_client):
    _, owner, token = api_client("DevOps")
    other = make_user("Viewers", username="someone-else")
    browser = TwoFactorClient()
    browser.force_login(other)
    assert token.prefix not in browser.get("/admin/api/apitoken/").content.decode()
    response = browser.post(
        "/admin/api/apitoken/",
        {"action": "revoke_tokens", "_selected_action": [token.pk]},
    )
    assert response.status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is None  # not in their list, so not revoked
    browser.force_login(owner)
    browser.post(
        "/admin/api/apitoken/", {"action": "revoke_tokens", "_selected_action": [token.pk]}
    )
    token.refresh_from_db()
    assert token.revoked_at is not None and token.revoked_by == owner


def _refused(client: ApiClient, wanted: str) -> None:
    response = client.get("/api/v1/incidents/")
    assert response.status_code == 401, response.content
    body = response.json()
    assert body["error"] == "authentication_failed" and wanted in body["detail"]
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_revoked_expired_and_deactivated_tokens_stop_working(api_client):
    client, user, token = api_client("DevOps")
    assert client.get("/api/v1/incidents/").status_code == 200
    api_token_revoke(token=token, actor=user)
    _refused(client, "revoked")
    revoked = AuditRecord.objects.filter(object_type="api.apitoken", message__contains="revoked")
    assert revoked.get().source == "api"

    soon = timezone.now() + dt.timedelta(seconds=30)
    token, plain = api_token_create(user=user, name="short-lived", expires_at=soon)
    client = ApiClient(plain)
    assert client.get("/api/v1/incidents/").status_code == 200
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    _refused(client, "expired")

    token, plain = api_token_create(user=user, name="owner leaves")
    client = ApiClient(plain)
    assert client.get("/api/v1/incidents/").status_code == 200
    user.is_active = False
    user.save()
    _refused(client, "can no longer sign in")


def test_unknown_and_malformed_tokens_are_refused(api_client):
    client, _, _ = api_client("Viewers")
    _refused(ApiClient(client.token[:-2] + "xx"), "not valid")
    _refused(ApiClient("ops_nothing"), "malformed")
    _refused(ApiClient("a-password"), "not an OpsPortal API token")
    response = ApiClient(None).get("/api/v1/incidents/", headers={"Authorization": "Basic Zm9v"})
    assert response.status_code == 401 and "Bearer" in response.json()["detail"]
    # No token at all: 401 too, saying how to send one.
    response = ApiClient(None).get("/api/v1/incidents/")
    assert response.status_code == 401 and "Authorization: Bearer" in response.json()["detail"]


def test_a_session_is_no_credential_for_the_api(api_client):
    _, user, _ = api_client("DevOps")
    browser = TwoFactorClient()
    browser.force_login(user)
    assert browser.get("/api/v1/incidents/").status_code == 401
    assert (
        browser.post("/api/v1/incidents/", INCIDENT, content_type="application/json").status_code
        == 401
    )


def test_last_use_is_stamped_with_time_and_address(api_client):
    client, _, token = api_client("Viewers")
    assert token.last_used_at is None
    client.get("/api/v1/systems/", headers={"X-Forwarded-For": "203.0.113.9"})
    token.refresh_from_db()
    assert token.last_used_at is not None
    assert token.last_used_from == "127.0.0.1"  # no trusted proxy: the header is ignored


def test_changes_made_with_a_token_are_audited_with_source_api(api_client):
    client, user, token = api_client("On-call engineers")
    before = AuditRecord.objects.count()
    assert client.get("/api/v1/incidents/").status_code == 200
    assert AuditRecord.objects.count() == before  # reading is not a change
    incident = client.post("/api/v1/incidents/", INCIDENT).json()
    # Opening writes its record (and, since escalation, the escalation it starts writes
    # one): every one carries the token's source, user and address.
    records = AuditRecord.objects.filter(
        object_type="incidents.incident", object_id=str(incident["id"])
    )
    assert records.filter(message__startswith="Opened").count() == 1
    for opened in records:
        assert opened.source == "api" and opened.actor == user
        assert opened.remote_addr == "127.0.0.1"
    used = (
        AuditRecord.objects.filter(object_type="api.apitoken", object_id=str(token.pk))
        .order_by("-id")
        .first()
    )
    assert used.source == "api" and "POST /api/v1/incidents/ → 201" in used.message
    assert token.prefix in used.object_repr
    # A refused change is recorded as a failure.
    client.post(f"/api/v1/incidents/{incident['id']}/close/", {})
    failed = AuditRecord.objects.filter(object_type="api.apitoken").order_by("-id").first()
    assert failed.outcome == "failure" and "→ 409" in failed.message


def test_each_token_is_throttled_on_its_own_with_retry_after(api_client, settings):
    settings.API_TOKEN_RATE = "3/minute"
    cache.clear()
    first, user, _ = api_client("Viewers")
    for _ in range(3):
        assert first.get("/api/v1/systems/").status_code == 200
    response = first.get("/api/v1/systems/")
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    body = response.json()
    assert body["error"] == "throttled" and "seconds" in body["detail"]
    # Another token (even the same owner's) has its own budget.
    _, plain = api_token_create(user=user, name="second")
    assert ApiClient(plain).get("/api/v1/systems/").status_code == 200
    # Writes past the limit: the first is recorded, the rest of the minute's are not (each
    # record takes the audit chain's lock).
    before = AuditRecord.objects.count()
    for _ in range(5):
        assert first.post("/api/v1/incidents/", INCIDENT).status_code == 429
    [throttled] = AuditRecord.objects.order_by("-id")[: AuditRecord.objects.count() - before]
    assert throttled.outcome == "failure" and throttled.message.endswith(
        "→ 429 (its further writes refused for its rate this minute are not recorded)"
    )
    assert throttled.source == "api" and throttled.actor == user
    cache.clear()
