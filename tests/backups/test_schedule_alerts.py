"""A failed or missed scheduled backup pages the database admins and, when the plan asks
for it, opens an incident (through the incidents app's real service)."""

import datetime as dt

from django.utils import timezone

from backups import services
from backups.models import BackupStatus
from backups.tasks import run_backup
from incidents.models import Incident
from opsportal.people.models import Notification, Responsibility, Team
from opsportal.people.services import people_load_defaults
from tests.realsystems import free_port


def dba_notifications(subject_part: str) -> list[Notification]:
    return list(
        Notification.objects.filter(
            responsibility=Responsibility.DATABASE, subject__contains=subject_part
        )
    )


def make_plan(register_database, *, open_incident: bool):
    people_load_defaults()
    Team.objects.filter(responsibility=Responsibility.DATABASE).update(email="dba@example.com")
    database = register_database("billing-db", "billing", port=free_port())  # nothing listens
    plan = services.backup_plan_ensure(database=database)
    plan.open_incident_on_failure = open_incident
    return services.backup_plan_save(plan=plan)


def test_failed_scheduled_backup_pages_the_dbas_and_opens_an_incident(register_database):
    plan = make_plan(register_database, open_incident=True)
    backup = services.backup_plan_run_scheduled(plan_id=plan.pk)
    run_backup.apply(args=[backup.pk])
    backup.refresh_from_db()
    assert backup.status == BackupStatus.FAILED
    assert "not reachable" in backup.message

    # One page, through the incident: its routing reaches the DBAs (and the on-call).
    [notification] = dba_notifications("Scheduled backup of billing-db failed")
    assert notification.recipient == "dba@example.com"
    assert "not reachable" in notification.body
    incident = Incident.objects.get(title="Scheduled backup of billing-db failed")
    assert notification.about == incident
    assert "not reachable" in incident.symptoms
    assert (incident.severity, incident.category, incident.source) == (
        "sev2",
        "database",
        "schedule",
    )
    assert list(incident.affected_systems.values_list("name", flat=True)) == ["billing-db"]


def test_a_plan_that_does_not_ask_for_incidents_only_pages(register_database):
    plan = make_plan(register_database, open_incident=False)
    backup = services.backup_plan_run_scheduled(plan_id=plan.pk)
    run_backup.apply(args=[backup.pk])
    assert dba_notifications("Scheduled backup of billing-db failed")
    assert not Incident.objects.exists()


def test_a_manual_backup_that_fails_pages_nobody(register_database):
    plan = make_plan(register_database, open_incident=True)
    backup = services.backup_request(database=plan.database, reason="before upgrade")
    run_backup.apply(args=[backup.pk])
    backup.refresh_from_db()
    assert backup.status == BackupStatus.FAILED
    assert not dba_notifications("billing-db")
    assert not Incident.objects.exists()


def test_a_missed_scheduled_backup_is_reported_once(register_database):
    plan = make_plan(register_database, open_incident=True)
    # Beat never started the 02:00 run: half an hour past the grace, the sweeper reports it.
    later = services.plan_next_due(plan, plan.created_at) + dt.timedelta(hours=1)
    assert services.backups_sweep(now=later)["missed"] == 1
    assert services.backups_sweep(now=later)["missed"] == 0  # once per missed run
    [notification] = dba_notifications("Scheduled backup of billing-db missed")
    assert "did not start" in notification.body
    assert isinstance(notification.about, Incident)
    assert Incident.objects.filter(title="Scheduled backup of billing-db missed").count() == 1
    assert later > timezone.now()
