"""In a real browser: schedule an ad hoc window, complete its pre-maintenance checklist (the
backup running for real in a worker), start it, see an alert suppressed, complete it."""

import datetime as dt

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from backups.models import Backup, BackupStatus
from incidents.models import Incident
from incidents.services import alert_receive
from maintenance.models import MaintenanceWindow, StepStatus, WindowStatus

pytestmark = pytest.mark.browser


def test_ad_hoc_window_from_schedule_to_completion(
    admin_login, live_server, celery_worker_process, postgres_target
):
    page, _user = admin_login
    page.goto(f"{live_server.url}/admin/maintenance/maintenancewindow/add/")
    start = timezone.now() + dt.timedelta(minutes=20)
    end = start + dt.timedelta(hours=1)
    page.fill("#id_title", "Upgrade PostgreSQL minor version")
    page.select_option("#id_kind", "ad_hoc")
    page.fill("#id_starts_at_0", f"{start:%Y-%m-%d}")
    page.fill("#id_starts_at_1", f"{start:%H:%M:%S}")
    page.fill("#id_ends_at_0", f"{end:%Y-%m-%d}")
    page.fill("#id_ends_at_1", f"{end:%H:%M:%S}")
    page.select_option("#id_systems_from", label="test-postgres")
    page.locator("#id_systems_add").click()
    page.fill("#id_expected_impact", "Writes pause for a minute")
    page.fill("#id_emails", "users@example.com")
    page.click("input[name=_continue]")
    expect(page.locator("ul.messagelist")).to_contain_text("was added successfully")
    window = MaintenanceWindow.objects.get(title="Upgrade PostgreSQL minor version")

    # Starting now is refused: no rollback plan, pre-maintenance not done.
    page.click("#window-start")
    expect(page.locator("#action-blockers")).to_contain_text("no rollback plan")
    page.click("#window-action-submit")
    expect(page.locator("ul.messagelist")).to_contain_text("Complete them")
    page.click(f".breadcrumbs a[href$='/{window.pk}/change/']")

    page.fill("#id_rollback_plan", "Restore the pre-maintenance backup with pg_restore.")
    page.click("input[name=_continue]")
    expect(page.locator("ul.messagelist")).to_contain_text("was changed successfully")

    def step_row(title):
        return page.locator(f"tr.checklist-step[data-step='{title}']")

    step_row("Notify users").locator("button.step-run").click()
    expect(page.locator("ul.messagelist")).to_contain_text("queued")
    step_row("Back up systems").locator("button.step-run").click()
    expect(page.locator("ul.messagelist")).to_contain_text("queued")
    step_row("Prepare rollback plan").locator("button.step-done").click()
    # Its form's page must have loaded before the page is reloaded below: a reload while the
    # submit still navigates finds no page to reload ("Not attached to an active page").
    expect(step_row("Prepare rollback plan").locator(".step-status")).to_have_text("Done")
    for title in ("Notify users", "Back up systems"):
        for _ in range(60):
            page.reload()
            if step_row(title).locator(".step-status").inner_text() in ("Done", "Failed"):
                break
            page.wait_for_timeout(1000)
        expect(step_row(title).locator(".step-status")).to_have_text("Done")
    backup_step = window.steps.get(title="Back up systems")
    assert backup_step.status == StepStatus.DONE
    assert Backup.objects.get(pk__in=backup_step.backup_ids).status == BackupStatus.SUCCEEDED

    page.click("#window-start")
    page.click("#window-action-submit")
    expect(page.locator("ul.messagelist")).to_contain_text("Started")
    expect(page.locator("#window-status")).to_have_text("In progress")

    # Alertmanager reports the database: recorded, suppressed, nobody paged.
    alert_receive(
        fingerprint="pg-replication-lag",
        status="firing",
        title="Replication lag on test-postgres",
        severity="sev2",
        category="database",
        systems=[postgres_target],
    )
    assert not Incident.objects.exists()
    page.reload()
    expect(page.locator("body")).to_contain_text("Alerts suppressed by this window")
    expect(page.locator("body")).to_contain_text("Replication lag on test-postgres")

    page.click("#window-log")
    page.fill("#id_text", "Upgraded PostgreSQL 16.3 to 16.4")
    page.click("#window-action-submit")
    expect(page.locator("body")).to_contain_text("Upgraded PostgreSQL 16.3 to 16.4")

    page.click("#window-complete")
    page.fill("#id_text", "All good")
    page.click("#window-action-submit")
    expect(page.locator("#window-status")).to_have_text("Completed")
    window.refresh_from_db()
    assert window.status == WindowStatus.COMPLETED
    assert list(window.announcements.values_list("kind", flat=True)) == [
        "lead",
        "start",
        "completion",
    ]
