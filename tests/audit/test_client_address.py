"""The client's address behind the TLS proxy: lockouts per real client, audit records naming
it, and X-Forwarded-For ignored unless a trusted proxy sent it."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from opsportal.audit.models import AuditRecord
from opsportal.defaults import load_defaults
from tests.signin import TwoFactorClient as Client

pytestmark = pytest.mark.django_db

PROXY = "10.0.0.2"
ALICE, BOB = "203.0.113.10", "203.0.113.20"
PASSWORD = "viewer-pass-123"


@pytest.fixture
def viewer(db):
    load_defaults()
    user = get_user_model().objects.create_user("vera", password=PASSWORD, is_staff=True)
    user.groups.add(Group.objects.get(name="Viewers"))
    return user


def through_proxy(client_address: str, *, proxy: str = PROXY, forwarded: str = "") -> Client:
    """A browser whose requests reach the portal through the proxy, which appends the address
    it was connected from to X-Forwarded-For (after anything the browser sent itself)."""
    chain = f"{forwarded}, {client_address}" if forwarded else client_address
    return Client(REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR=chain)


def log_in(client: Client, password: str):
    return client.post("/admin/login/", {"username": "vera", "password": password})


def failed_login_addresses() -> list[str]:
    return list(
        AuditRecord.objects.filter(action="login_failed")
        .order_by("id")
        .values_list("remote_addr", flat=True)
    )


def test_behind_the_proxy_lockouts_and_audit_records_are_per_real_client(viewer, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    settings.TRUSTED_PROXIES = [PROXY]
    alice, bob = through_proxy(ALICE), through_proxy(BOB)

    for _ in range(settings.AXES_FAILURE_LIMIT):
        log_in(alice, "wrong-guess")
    assert log_in(alice, PASSWORD).status_code == 429  # Alice's address is locked out

    response = log_in(bob, PASSWORD)  # Bob, behind the same proxy, is not
    assert response.status_code == 302, response.content.decode()[:500]
    assert response.wsgi_request.user.is_authenticated

    # The guesses, and the refused attempt while locked out: all Alice's, none Bob's.
    assert set(failed_login_addresses()) == {ALICE}
    assert len(failed_login_addresses()) > settings.AXES_FAILURE_LIMIT
    login = AuditRecord.objects.get(action="login")
    assert login.remote_addr == BOB


def test_what_the_client_itself_put_into_x_forwarded_for_is_not_believed(viewer, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    settings.TRUSTED_PROXIES = [PROXY]
    for forged in ("198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.4", "1.1.1.1"):
        log_in(through_proxy(ALICE, forwarded=forged), "wrong-guess")
    assert failed_login_addresses() == [ALICE] * 5
    assert log_in(through_proxy(ALICE, forwarded="192.0.2.99"), PASSWORD).status_code == 429


def test_without_a_configured_proxy_x_forwarded_for_is_ignored(viewer, settings):
    settings.TRUSTED_PROXY_COUNT = 0
    settings.TRUSTED_PROXIES = []
    # Anyone can send the header; rotating it must not dodge the lockout.
    for n in range(settings.AXES_FAILURE_LIMIT):
        log_in(through_proxy(f"198.51.100.{n + 1}"), "wrong-guess")
    assert failed_login_addresses() == [PROXY] * settings.AXES_FAILURE_LIMIT
    assert log_in(through_proxy(BOB), PASSWORD).status_code == 429


def test_a_request_that_bypasses_the_listed_proxies_has_its_header_ignored(viewer, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    settings.TRUSTED_PROXIES = ["10.0.0.0/29"]
    log_in(through_proxy(ALICE, proxy="10.0.0.5"), "wrong-guess")  # a listed proxy
    log_in(through_proxy(ALICE, proxy="192.168.7.7"), "wrong-guess")  # straight to the portal
    assert failed_login_addresses() == [ALICE, "192.168.7.7"]


def test_a_staff_change_is_audited_with_the_forwarded_address(viewer, superuser, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    client = through_proxy(ALICE)
    client.force_login(superuser)
    response = client.post(
        "/admin/auth/group/add/", {"name": "Night shift", "permissions": []}, follow=False
    )
    assert response.status_code == 302, response.content.decode()[:500]
    record = AuditRecord.objects.get(object_type="auth.group", object_repr="Night shift")
    assert (record.actor_name, record.remote_addr) == ("root", ALICE)


def test_an_invalid_trusted_proxies_entry_stops_the_portal_at_its_checks(settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/33"]
    with pytest.raises(SystemCheckError, match=r"audit\.E001"):
        call_command("check")
