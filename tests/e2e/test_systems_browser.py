"""Registering systems through the admin in a real browser: a Docker engine whose "Test
connection" succeeds and is audited, and a PostgreSQL database whose password never comes
back in a page."""

import os
import re

import pytest

from opsportal.systems.models import DockerEngine, PostgresDatabase

pytestmark = pytest.mark.browser

PG_PASSWORD = "s3cret-pg-password"  # the password the password_postgres_port server demands


def test_register_docker_engine_and_test_connection(admin_login, live_server):
    page, _ = admin_login
    base_url = os.environ["OPSPORTAL_TEST_DOCKER_HOST"]

    # Systems → Docker engines → Add, as a user finds it.
    page.goto(f"{live_server.url}/admin/")
    page.get_by_role("link", name="Docker engines").click()
    page.get_by_role("link", name=re.compile("Add Docker engine", re.I)).click()
    page.fill("#id_name", "build-host")
    page.fill("#id_base_url", base_url)
    page.click("input[name=_continue]")
    page.wait_for_selector("#test-connection")
    assert "was added successfully" in page.inner_text("ul.messagelist")
    engine = DockerEngine.objects.get(name="build-host")
    assert engine.base_url == base_url

    page.click("#test-connection")
    message = page.inner_text("ul.messagelist")
    assert "Connection OK" in message, message
    assert page.url.endswith(f"/admin/systems/dockerengine/{engine.pk}/change/")
    assert "OK" in page.inner_text(".field-status")
    engine.refresh_from_db()
    assert engine.last_check_ok is True

    # The check is in the audit log, with who ran it.
    page.goto(f"{live_server.url}/admin/audit/auditrecord/?q=build-host")
    rows = page.inner_text("#result_list")
    assert "Test connection:" in rows
    assert "ops" in rows
    assert "Success" in rows


def test_postgres_password_never_comes_back(admin_login, live_server, password_postgres_port):
    page, _ = admin_login
    page.goto(f"{live_server.url}/admin/systems/postgresdatabase/add/")
    page.fill("#id_name", "orders-db")
    page.fill("#id_host", "127.0.0.1")
    page.fill("#id_port", str(password_postgres_port))
    page.fill("#id_dbname", "postgres")
    page.fill("#id_username", "postgres")
    page.fill("#id_password", PG_PASSWORD)
    page.click("input[name=_continue]")
    page.wait_for_selector("#test-connection")
    assert PG_PASSWORD not in page.content()
    assert PostgresDatabase.objects.get(name="orders-db").password == PG_PASSWORD
    assert page.input_value("#id_password") == ""

    # The stored password works (so it was saved), and the result page does not show it.
    page.click("#test-connection")
    assert "Connection OK" in page.inner_text("ul.messagelist")
    assert PG_PASSWORD not in page.content()

    # Saving again with the field left empty keeps it; no list or log page shows it.
    page.click("input[name=_continue]")
    assert "was changed successfully" in page.inner_text("ul.messagelist")
    assert PostgresDatabase.objects.get(name="orders-db").password == PG_PASSWORD
    for path in (
        "/admin/systems/postgresdatabase/",
        "/admin/systems/system/",
        "/admin/audit/auditrecord/?q=orders-db",
    ):
        page.goto(live_server.url + path)
        assert PG_PASSWORD not in page.content(), path


def test_register_a_tls_engine_by_pasting_its_pem_key(
    admin_login, live_server, tls_engine_material
):
    """A PEM key keeps its line breaks through the write-only field (a password input
    would strip them) and is never shown again."""
    page, _ = admin_login
    page.goto(f"{live_server.url}/admin/systems/dockerengine/add/")
    page.fill("#id_name", "swarm-manager")
    page.fill("#id_base_url", tls_engine_material["base_url"])
    page.fill("#id_tls_ca_cert", tls_engine_material["tls_ca_cert"])
    page.fill("#id_tls_client_cert", tls_engine_material["tls_client_cert"])
    page.fill("#id_tls_client_key", tls_engine_material["tls_client_key"])
    page.click("input[name=_continue]")
    page.wait_for_selector("#test-connection")
    engine = DockerEngine.objects.get(name="swarm-manager")
    assert engine.tls_client_key == tls_engine_material["tls_client_key"].strip()
    key_body = tls_engine_material["tls_client_key"].splitlines()[1]
    assert key_body not in page.content()
    assert page.input_value("#id_tls_client_key") == ""

    page.click("#test-connection")
    message = page.inner_text("ul.messagelist")
    assert "Connection OK" in message, message
