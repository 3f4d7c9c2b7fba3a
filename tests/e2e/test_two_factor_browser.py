"""Two-factor sign-in in Chromium: enrol with the QR page's key, sign in with a real TOTP
code computed here, a wrong code refused, a backup code working once."""

import time

import pytest
from django.contrib.auth import get_user_model
from django_otp.plugins.otp_totp.models import TOTPDevice

from opsportal.audit.models import AuditAction, AuditRecord
from tests.signin import authenticator_code, enrol_in_browser, sign_in

pytestmark = pytest.mark.browser

PASSWORD = "pw-ada-two-factor-1!"


def log_out(page):
    with page.expect_navigation():
        page.click("#logout-form button[type=submit]")


def try_login(page, base_url, code: str) -> None:
    page.goto(f"{base_url}/admin/login/")
    page.fill("#id_username", "ada")
    page.fill("#id_password", PASSWORD)
    page.fill("#id_otp_token", code)
    with page.expect_navigation():
        page.click("#login-form input[type=submit]")


def wait_until_device_accepts_codes(device: TOTPDevice) -> None:
    """django-otp throttles a device for a second after one wrong code."""
    deadline = time.monotonic() + 10
    while True:
        device.refresh_from_db()
        if device.verify_is_allowed()[0]:
            return
        assert time.monotonic() < deadline, "the device stayed throttled"
        time.sleep(0.1)


def test_enrol_then_sign_in_with_computed_code_wrong_code_and_backup_code(
    live_server, page, transactional_db
):
    user = get_user_model().objects.create_superuser("ada", "ada@example.com", PASSWORD)

    # The password alone leads to enrolment, nowhere else.
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "ada")
    page.fill("#id_password", PASSWORD)
    with page.expect_navigation():
        page.click("#login-form input[type=submit]")
    assert "/admin/two-factor/setup/" in page.url
    assert page.locator("#totp-qr svg path").count() == 1
    page.goto(f"{live_server.url}/admin/incidents/incident/")
    assert "/admin/two-factor/setup/" in page.url

    backup_codes = enrol_in_browser(page)
    assert len(backup_codes) == 10
    assert page.url.endswith("/admin/incidents/incident/")  # back where the user was going
    device = TOTPDevice.objects.get(user=user, confirmed=True)
    log_out(page)

    # A wrong code is refused with the same words as a wrong password.
    right = authenticator_code(device)
    try_login(page, live_server.url, f"{(int(right) + 1) % 1_000_000:06d}")
    assert "/admin/login/" in page.url
    assert "password and authentication code" in page.inner_text(".errornote")
    page.goto(f"{live_server.url}/admin/")
    assert "/admin/login/" in page.url

    # The code the app shows now signs in.
    wait_until_device_accepts_codes(device)
    sign_in(page, live_server.url, "ada", PASSWORD)
    assert page.url == f"{live_server.url}/admin/"
    log_out(page)

    # A backup code works once.
    try_login(page, live_server.url, backup_codes[0])
    assert page.url == f"{live_server.url}/admin/", page.inner_text("#content")
    log_out(page)
    try_login(page, live_server.url, backup_codes[0])
    assert "/admin/login/" in page.url

    messages = list(
        AuditRecord.objects.filter(object_type="auth.user", object_id=str(user.pk)).values_list(
            "action", "message"
        )
    )
    assert (AuditAction.CHANGE, "Two-factor sign-in set up") in messages
    failed = AuditRecord.objects.filter(action=AuditAction.LOGIN_FAILED, object_repr="ada")
    assert failed.count() == 2


def test_admin_pages_cause_no_content_security_policy_violations(admin_login, live_server):
    from incidents.services import incident_open
    from opsportal.systems.models import HttpEndpoint

    page, user = admin_login
    endpoint = HttpEndpoint.objects.create(name="csp-api", url="http://127.0.0.1:9/health")
    incident = incident_open(
        title="Checkout slow",
        severity="sev2",
        category="api",
        reporter=user,
        symptoms="p95 over 2 s",
        affected_systems=[endpoint],
    )

    violations: list[str] = []
    page.on(
        "console",
        lambda message: (
            violations.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    # Registered before any page script runs; the browser reports each blocked inline
    # script, handler, style attribute or foreign resource as this event.
    page.add_init_script(
        "window.__csp = [];"
        "document.addEventListener('securitypolicyviolation', e => window.__csp.push("
        "e.violatedDirective + ' ' + (e.blockedURI || '') + ' ' + (e.sample || '')));"
    )

    pages = [
        "/admin/",
        "/admin/incidents/incident/",
        f"/admin/incidents/incident/{incident.pk}/change/",
        "/admin/incidents/incident/add/",
        "/admin/systems/httpendpoint/",
        f"/admin/systems/httpendpoint/{endpoint.pk}/change/",
        "/admin/audit/auditrecord/",
        "/admin/auth/user/",
        f"/admin/auth/user/{user.pk}/change/",
        "/admin/maintenance/maintenancewindow/month/",
        "/admin/two-factor/",
    ]
    for path in pages:
        response = page.goto(f"{live_server.url}{path}")
        assert response.status == 200, path
        policy = response.headers["content-security-policy"]
        # Only the portal's files, or an inline block carrying this response's nonce.
        assert "script-src 'self'" in policy and "style-src 'self'" in policy, policy
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy, policy
        if path == "/admin/incidents/incident/":
            # The changelist's actions: select every row, pick an action (admin JS runs).
            page.check("#action-toggle")
            page.select_option("select[name=action]", index=1)
            assert "selected" in page.inner_text(".action-counter")
        page.wait_for_load_state("load")
        assert page.evaluate("window.__csp") == [], path
        assert violations == [], path

    # The listener does see a violation: a style attribute set by script is blocked.
    page.evaluate("document.body.setAttribute('style', 'color: red')")
    page.wait_for_function("window.__csp.length > 0")
    assert "style-src" in page.evaluate("window.__csp")[0]
