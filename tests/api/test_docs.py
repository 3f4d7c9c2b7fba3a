"""/api/docs/ (Swagger UI) and /api/schema/: served from the installed packages, no CDN,
inside the portal's Content-Security-Policy; for signed-in users or token holders."""

from __future__ import annotations

import re

import pytest
import yaml

from tests.signin import TwoFactorClient

pytestmark = pytest.mark.django_db


def test_swagger_ui_is_served_locally_under_the_csp(api_client):
    client, user, _ = api_client("Viewers")
    assert TwoFactorClient().get("/api/docs/")["Location"].startswith("/admin/login/")
    browser = TwoFactorClient()
    browser.force_login(user)
    page = browser.get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert not re.search(r"cdn|jsdelivr|unpkg|https?://", html)
    nonce = re.search(r"'nonce-([^']+)'", page["Content-Security-Policy"])[1]
    assert f'<style nonce="{nonce}">' in html
    assert "<script>" not in html  # every script is a file: no inline script to allow
    scripts = re.findall(r'<script src="([^"]+)"', html)
    assert any("swagger-ui-bundle" in s for s in scripts) and any("script" in s for s in scripts)
    for src in scripts:
        response = browser.get(src)
        assert response.status_code == 200, src
    # The page's script reads the schema with the session; a token reads it too.
    schema = yaml.safe_load(browser.get("/api/schema/").content)
    assert "/api/v1/maintenance/now/" in schema["paths"]
    assert client.get("/api/schema/").status_code == 200
    assert TwoFactorClient().get("/api/schema/").status_code == 401
