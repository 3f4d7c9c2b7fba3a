"""The schedules list (django-celery-beat): its actions switch off or run production work, so
only roles that may change schedules get them, and each use is audited."""

import pytest
from django_celery_beat.models import PeriodicTask

from opsportal.audit.models import AuditRecord
from opsportal.defaults import load_defaults
from tests.systems.conftest import client_in_group

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/django_celery_beat/periodictask/"


@pytest.fixture
def backups_schedule(db) -> PeriodicTask:
    load_defaults()
    return PeriodicTask.objects.filter(enabled=True).order_by("name").first()


@pytest.mark.parametrize("role", ["Viewers", "On-call engineers", "Database admins"])
def test_roles_that_may_not_change_schedules_cannot_disable_one(role, backups_schedule):
    client = client_in_group(role)
    page = client.get(CHANGELIST)
    assert page.status_code == 200
    assert "disable_tasks" not in page.content.decode()
    client.post(CHANGELIST, {"action": "disable_tasks", "_selected_action": [backups_schedule.pk]})
    backups_schedule.refresh_from_db()
    assert backups_schedule.enabled
    assert (
        not AuditRecord.objects.filter(
            object_type="django_celery_beat.periodictask", object_id=str(backups_schedule.pk)
        )
        .exclude(action="create")
        .exists()
    )


def test_devops_disables_a_schedule_and_it_is_audited(backups_schedule):
    client = client_in_group("DevOps")
    assert "disable_tasks" in client.get(CHANGELIST).content.decode()
    response = client.post(
        CHANGELIST, {"action": "disable_tasks", "_selected_action": [backups_schedule.pk]}
    )
    assert response.status_code == 302
    backups_schedule.refresh_from_db()
    assert not backups_schedule.enabled
    record = AuditRecord.objects.exclude(action="create").get(
        object_type="django_celery_beat.periodictask", object_id=str(backups_schedule.pk)
    )
    assert record.actor_name == "user-devops"
    assert "Disabled the schedule" in record.message


def test_editing_a_schedule_is_audited_but_beat_bookkeeping_is_not(backups_schedule):
    from django.utils import timezone

    before = AuditRecord.objects.count()
    backups_schedule.last_run_at = timezone.now()
    backups_schedule.total_run_count += 1
    backups_schedule.save()
    assert AuditRecord.objects.count() == before
    backups_schedule.description = "Moved to 02:00 for the night shift"
    backups_schedule.save()
    change = AuditRecord.objects.filter(
        object_type="django_celery_beat.periodictask", action="change"
    ).get()
    assert "description" in change.changes
