"""A DBA runs a manual backup, opens it, restores it into a second database and sees the
drill and restore results, in a real browser."""

import pytest

from backups import services
from backups.models import Backup, Restore
from opsportal.celery import app as celery_app
from tests.backups.conftest import (  # noqa: F401 (fixtures)
    backup_root,
    pgbench_source_db,
    second_database,
    source_database,
    table_contents_digest,
)

pytestmark = pytest.mark.browser


@pytest.fixture
def eager_tasks():
    # The live server runs queued work in-process once the request's transaction commits,
    # standing in for a worker.
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = False


def test_dba_backs_up_restores_and_drills(
    admin_login,
    live_server,
    eager_tasks,
    source_database,  # noqa: F811
    second_database,  # noqa: F811
):
    page, _ = admin_login
    plan = services.backup_plan_ensure(database=source_database)

    page.goto(f"{live_server.url}/admin/backups/backupplan/")
    page.check(f"input[name=_selected_action][value='{plan.pk}']")
    page.select_option("select[name=action]", "back_up_now")
    page.click("button[name=index]")
    page.wait_for_selector("text=Backup of orders-db queued")
    backup = Backup.objects.get(database=source_database)
    assert backup.status == "succeeded", backup.message

    page.click(f"text=backup #{backup.pk}")
    page.wait_for_selector("text=Verified")
    assert backup.sha256 in page.content()

    page.click("#drill-backup")
    page.wait_for_selector("text=Restore drill queued")
    page.wait_for_selector("text=row counts of all")

    page.click("#restore-backup")
    page.select_option("#id_target", str(second_database.pk))
    page.fill("#id_confirmation", "wrong-name")
    page.fill("#id_reason", "refresh the reporting copy")
    page.click("#restore-submit")
    page.wait_for_selector("#restore-error")
    assert "exactly to confirm" in page.inner_text("#restore-error")
    assert not Restore.objects.exists()

    page.fill("#id_confirmation", second_database.name)
    page.click("#restore-submit")
    page.wait_for_selector("text=queued; a safety backup of the target is taken first")
    page.reload()
    page.wait_for_selector("text=Restored backup")
    restore = Restore.objects.get()
    assert restore.status == "succeeded", restore.message
    assert table_contents_digest(second_database.dbname) == table_contents_digest(
        source_database.dbname
    )
