"""A commander writes up a resolved incident in the browser: opens the printable review
(its print stylesheet hides the toolbar, the page's one script is allowed by the CSP) and
commits the draft to the configuration Git repository with one click."""

import subprocess

import pytest

from backups.services import configuration_backup
from incidents.services import (
    incident_acknowledge,
    incident_add_note,
    incident_open,
    incident_resolve,
)

pytestmark = pytest.mark.browser


def test_printable_review_and_one_click_commit(admin_login, live_server, settings, tmp_path):
    page, user = admin_login
    settings.CONFIG_BACKUP_REPO = tmp_path / "config-repo"
    settings.CONFIG_BACKUP_REMOTE = ""
    configuration_backup()
    incident = incident_open(
        title="Checkout | 502s", severity="sev3", category="api", reporter=user
    )
    incident_acknowledge(incident=incident, actor=user)
    incident_add_note(incident=incident, actor=user, text="# upstream pool exhausted")
    incident_resolve(incident=incident, actor=user, resolution="Pool raised.")
    refused = []
    page.on("console", lambda m: refused.append(m.text) if "Content Security" in m.text else None)

    page.goto(f"{live_server.url}/admin/incidents/incident/{incident.pk}/change/")
    page.click("#postmortem-print")
    page.wait_for_selector("#postmortem-title")
    assert page.inner_text("#postmortem-title") == (
        f"Post-incident review: incident #{incident.pk}: Checkout | 502s"
    )
    assert page.locator("#postmortem-timeline td", has_text="# upstream pool exhausted").count()
    assert page.is_visible("#print-page")
    page.emulate_media(media="print")
    assert not page.is_visible("#print-page")
    page.emulate_media(media="screen")
    assert refused == []

    page.goto(f"{live_server.url}/admin/incidents/incident/{incident.pk}/change/")
    page.click("#postmortem-commit")
    message = page.inner_text("ul.messagelist")
    path = f"postmortems/{incident.pk}-checkout-502s.md"
    assert f"Post-incident review draft committed as {path}" in message
    committed = subprocess.run(
        ["git", "-C", str(settings.CONFIG_BACKUP_REPO), "show", f"HEAD:{path}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert committed.startswith(f"# Post-incident review: incident #{incident.pk}: Checkout \\|")
    assert "\\# upstream pool exhausted" in committed
