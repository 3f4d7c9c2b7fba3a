"""Session lifetime: idle sessions and old sessions are signed out server-side."""

import time

import pytest
from django.contrib.auth import SESSION_KEY, get_user_model
from django.contrib.sessions.backends.db import SessionStore

from opsportal.accounts.middleware import LAST_SEEN_AT, SIGNED_IN_AT
from tests.signin import authenticator_code, authenticator_of

pytestmark = pytest.mark.django_db

PASSWORD = "pw-sam-session-1!"


@pytest.fixture
def signed_in(client):
    """A session made by the real login form: password and a code from the authenticator."""
    user = get_user_model().objects.create_superuser("sam", "sam@example.com", PASSWORD)
    device = authenticator_of(user)
    response = client.post(
        "/admin/login/",
        {"username": "sam", "password": PASSWORD, "otp_token": authenticator_code(device)},
    )
    assert response.status_code == 302
    assert client.get("/admin/").status_code == 200
    return client


def rewind(client, **seconds_ago: float) -> str:
    """Move the session's stored timestamps back, as if that much time had passed."""
    key = client.cookies["sessionid"].value
    session = SessionStore(key)
    for name, ago in seconds_ago.items():
        session[name] = time.time() - ago
    session.save()
    return key


def test_an_idle_session_is_signed_out_after_the_idle_time(signed_in, settings):
    settings.SESSION_IDLE_TIMEOUT_SECONDS = 60

    rewind(signed_in, **{LAST_SEEN_AT: 55})
    assert signed_in.get("/admin/").status_code == 200  # still inside the idle time

    key = rewind(signed_in, **{LAST_SEEN_AT: 61})
    response = signed_in.get("/admin/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    assert SESSION_KEY not in SessionStore(key).load()  # the stored session is gone
    login_page = signed_in.get(response["Location"])
    assert "no activity for 1 minute" in login_page.content.decode()


def test_activity_keeps_a_session_alive(signed_in, settings):
    settings.SESSION_IDLE_TIMEOUT_SECONDS = 60
    rewind(signed_in, **{LAST_SEEN_AT: 50})
    assert signed_in.get("/admin/").status_code == 200  # refreshes the last-seen time
    rewind(signed_in, **{SIGNED_IN_AT: 200})  # signed in long ago, but active just now
    assert signed_in.get("/admin/").status_code == 200


def test_a_session_ends_after_its_absolute_lifetime_even_when_active(signed_in, settings):
    settings.SESSION_ABSOLUTE_TIMEOUT_SECONDS = 3600
    rewind(signed_in, **{SIGNED_IN_AT: 3599, LAST_SEEN_AT: 1})
    assert signed_in.get("/admin/").status_code == 200

    rewind(signed_in, **{SIGNED_IN_AT: 3601, LAST_SEEN_AT: 1})
    response = signed_in.get("/admin/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    assert "signed in more than 1 hour ago" in signed_in.get(response["Location"]).content.decode()


def test_responses_carry_the_content_security_policy(signed_in):
    policy = signed_in.get("/admin/")["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"].startswith("'self'")
    assert directives["object-src"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe-inline" not in policy
