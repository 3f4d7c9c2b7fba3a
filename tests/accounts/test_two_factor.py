"""Two-factor sign-in through the admin's forms, with real TOTP devices and backup codes."""

import re
from base64 import b32decode

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from opsportal.access import groups_load_defaults
from opsportal.accounts import services
from opsportal.audit.models import AuditAction, AuditRecord
from tests.signin import (
    TwoFactorClient,
    authenticator_code,
    code_for_key,
    enrol_authenticator,
)

pytestmark = pytest.mark.django_db

PASSWORD = "pw-two-factor-123!"


@pytest.fixture
def staff_user():
    groups_load_defaults()
    user = get_user_model().objects.create_user("dana", password=PASSWORD, is_staff=True)
    user.groups.add(Group.objects.get(name="DevOps"))
    return user


def login(client, code: str | None = None, username: str = "dana"):
    data = {"username": username, "password": PASSWORD}
    if code is not None:
        data["otp_token"] = code
    return client.post("/admin/login/", data)


def test_without_a_device_the_password_leads_only_to_enrolment(client, staff_user):
    response = login(client)
    assert response.status_code == 302
    for url in ("/admin/", "/admin/incidents/incident/", "/admin/systems/dockerengine/"):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/admin/two-factor/setup/?next="), url
    assert client.post("/admin/systems/dockerengine/add/", {}).status_code == 302


def test_enrolment_shows_a_qr_code_and_confirms_with_a_code(client, staff_user):
    login(client)
    page = client.get("/admin/two-factor/setup/").content.decode()
    assert "<svg" in page and "<path" in page
    secret = re.search(r'id="totp-secret">([A-Z2-7 ]+)<', page).group(1).replace(" ", "")
    device = TOTPDevice.objects.get(user=staff_user, confirmed=False)
    assert b32decode(secret).hex() == device.key

    refused = client.post("/admin/two-factor/setup/", {"otp_token": "000000"})
    assert "does not match" in refused.content.decode()
    device.refresh_from_db()
    assert not device.confirmed
    device.throttle_reset()  # django-otp throttles the next try for a second otherwise

    done = client.post(
        "/admin/two-factor/setup/", {"otp_token": code_for_key(device.key), "next": "/admin/"}
    )
    codes = re.findall(r"<li><code>([a-z2-7]+)</code></li>", done.content.decode())
    assert len(codes) == 10
    assert sorted(codes) == sorted(
        StaticToken.objects.filter(device__user=staff_user).values_list("token", flat=True)
    )
    device.refresh_from_db()
    assert device.confirmed
    assert client.get("/admin/").status_code == 200  # this session is verified now
    assert AuditRecord.objects.filter(
        action=AuditAction.CHANGE, object_id=str(staff_user.pk), message="Two-factor sign-in set up"
    ).exists()
    # Shown once: the overview only counts them.
    overview = client.get("/admin/two-factor/").content.decode()
    assert "10 unused backup codes left" in overview and codes[0] not in overview


def test_a_user_with_a_device_must_give_a_valid_code(client, staff_user):
    device, _ = enrol_authenticator(staff_user)

    for code in (None, "", "123456" if authenticator_code(device) != "123456" else "654321"):
        response = login(client, code)
        assert response.status_code == 200
        assert "password and authentication code" in response.content.decode()
        assert client.get("/admin/").status_code == 302
    assert (
        AuditRecord.objects.filter(action=AuditAction.LOGIN_FAILED, object_repr="dana").count() == 3
    )
    device.refresh_from_db()
    device.throttle_reset()

    response = login(client, authenticator_code(device))
    assert response.status_code == 302
    assert client.get("/admin/").status_code == 200


def test_wrong_codes_count_towards_the_login_lockout(client, staff_user, settings):
    device, _ = enrol_authenticator(staff_user)
    wrong = "000000" if authenticator_code(device) != "000000" else "111111"
    for _ in range(settings.AXES_FAILURE_LIMIT):
        login(client, wrong)
    device.refresh_from_db()
    device.throttle_reset()
    response = login(client, authenticator_code(device))
    assert response.status_code == 429


def test_a_backup_code_works_once(client, staff_user):
    _, backup_codes = enrol_authenticator(staff_user)
    assert login(client, backup_codes[0].upper()).status_code == 302
    assert client.get("/admin/").status_code == 200
    other = Client()
    reused = login(other, backup_codes[0])
    assert reused.status_code == 200
    assert "password and authentication code" in reused.content.decode()
    assert other.get("/admin/")["Location"].startswith("/admin/login/")
    assert services.backup_codes_left(user=staff_user) == 9


def test_new_backup_codes_replace_the_old_ones(client, staff_user):
    _, old_codes = enrol_authenticator(staff_user)
    client.force_login(staff_user)
    # New codes only by POST (a link or prefetch must not replace them).
    assert client.get("/admin/two-factor/backup-codes/").status_code == 405
    assert client.post("/admin/two-factor/").status_code == 405
    page = client.post("/admin/two-factor/backup-codes/").content.decode()
    new_codes = re.findall(r"<li><code>([a-z2-7]+)</code></li>", page)
    assert len(new_codes) == 10 and not set(new_codes) & set(old_codes)
    assert login(Client(), new_codes[0]).status_code == 302
    assert login(Client(), old_codes[0]).status_code == 200


def test_an_unverified_session_of_a_user_with_a_device_is_asked_for_a_code(staff_user):
    device, _ = enrol_authenticator(staff_user)
    browser = Client()  # e.g. a session from before two-factor was required
    browser.force_login(staff_user)
    response = browser.get("/admin/incidents/incident/")
    assert response["Location"].startswith("/admin/two-factor/verify/?next=")
    # A password-only session may not swap the authenticator for its own.
    assert browser.get("/admin/two-factor/setup/")["Location"] == "/admin/two-factor/verify/"

    verified = browser.post(
        "/admin/two-factor/verify/",
        {"otp_token": authenticator_code(device), "next": "/admin/incidents/incident/"},
    )
    assert verified["Location"] == "/admin/incidents/incident/"
    assert browser.get("/admin/incidents/incident/").status_code == 200


def test_only_a_superuser_resets_a_second_factor_and_it_is_audited(client, staff_user, superuser):
    enrol_authenticator(staff_user)
    victim = TwoFactorClient()
    victim.force_login(staff_user)
    assert victim.get("/admin/").status_code == 200

    reset_url = f"/admin/auth/user/{staff_user.pk}/two-factor/reset/"
    security = get_user_model().objects.create_user("sec", password=PASSWORD, is_staff=True)
    security.groups.add(Group.objects.get(name="Security team"))
    client.force_login(security)
    assert client.get(reset_url).status_code == 403
    assert client.post(reset_url, {"reason": "lost phone"}).status_code == 403
    assert services.two_factor_is_set_up(user=staff_user)
    with pytest.raises(services.TwoFactorRefused):
        services.two_factor_reset(user=staff_user, actor=security, reason="lost phone")

    client.force_login(superuser)
    change_page = client.get(f"/admin/auth/user/{staff_user.pk}/change/").content.decode()
    assert reset_url in change_page
    assert client.post(reset_url, {"reason": ""}).status_code == 200  # a reason is required
    response = client.post(reset_url, {"reason": "lost phone, confirmed by a call"})
    assert response.status_code == 302
    assert not services.two_factor_is_set_up(user=staff_user)
    assert services.backup_codes_left(user=staff_user) == 0

    record = AuditRecord.objects.filter(object_id=str(staff_user.pk)).order_by("-id").first()
    assert record.actor == superuser
    assert record.message == "Two-factor sign-in reset by root: lost phone, confirmed by a call"
    # The person's open session lost its second factor: they set up a new one.
    assert victim.get("/admin/")["Location"].startswith("/admin/two-factor/setup/")


def test_relaxed_requirement_lets_a_password_in_but_still_asks_enrolled_users(
    client, staff_user, settings
):
    settings.OPSPORTAL_REQUIRE_2FA = False
    login(client)
    assert client.get("/admin/").status_code == 200

    device, _ = enrol_authenticator(staff_user)
    fresh = Client()
    refused = login(fresh)  # the right password alone: the code is still asked for
    assert refused.status_code == 200
    assert "password and authentication code" in refused.content.decode()
    assert fresh.get("/admin/")["Location"].startswith("/admin/login/")
    assert login(fresh, authenticator_code(device)).status_code == 302


def test_django_otp_device_admins_are_not_served(staff_client):
    # They would show TOTP keys and backup codes.
    assert staff_client.get("/admin/otp_totp/totpdevice/").status_code == 404
    assert staff_client.get("/admin/otp_static/staticdevice/").status_code == 404
