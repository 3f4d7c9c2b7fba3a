"""Backups that look wrong: each verified backup of a real pgbench database compared with the
database's recent backups (size, duration, row counts per table), with the real pg_dump, the
real incidents app behind the alert hand-off, and /metrics as Prometheus scrapes it."""

from __future__ import annotations

import os

import psycopg
import pytest
from django.urls import reverse

from backups import services
from backups.models import Backup, BackupStatus, HistoryCheck, Verification
from backups.services.anomalies import BackupFigures, alert_fingerprint_for
from backups.tasks import run_backup
from incidents.models import Alert, Incident
from opsportal.audit.models import AuditRecord
from opsportal.defaults import load_defaults
from opsportal.health import metrics
from opsportal.people.models import Notification, Responsibility, Team
from tests.backups.conftest import admin_dsn, pgbench_init, query, recreate_database
from tests.systems.conftest import client_in_group

ANOMALY_DB = f"{os.environ.get('OPSPORTAL_TEST_TARGET_DB', 'opsportal_target')}_bk_anom"


@pytest.fixture
def shop_database(db, register_database):
    """A pgbench database of its own (scale 1: 100,000 accounts), which the tests damage."""
    recreate_database(ANOMALY_DB)
    pgbench_init(ANOMALY_DB, 1)
    database = register_database("shop-db", ANOMALY_DB)
    services.backup_plan_ensure(database=database)
    yield database
    with psycopg.connect(admin_dsn(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{ANOMALY_DB}" WITH (FORCE)')


def back_up(database) -> Backup:
    backup = services.backup_request(database=database, reason="nightly")
    run_backup.apply(args=[backup.pk])
    backup.refresh_from_db()
    assert backup.status == BackupStatus.SUCCEEDED, backup.message
    assert backup.verification == Verification.VERIFIED, backup.verification_message
    return backup


def suspicious_gauge(database_name: str) -> str | None:
    prefix = f'opsportal_backup_last_suspicious{{database="{database_name}"}} '
    for line in metrics.render().decode().splitlines():
        if line.startswith(prefix):
            return line.removeprefix(prefix)
    return None


def test_with_fewer_than_three_earlier_backups_no_judgement_is_made(shop_database):
    backups = [back_up(shop_database) for _ in range(2)]
    # Even a backup of a database that lost its biggest table is not judged on two earlier
    # backups: too little history to call anything usual.
    query(ANOMALY_DB, "DROP TABLE pgbench_accounts")
    backups.append(back_up(shop_database))

    for earlier, backup in enumerate(backups):
        assert backup.history_check == HistoryCheck.NOT_JUDGED
        [reason] = backup.history_warnings
        assert reason.startswith(f"Not judged: only {earlier} earlier verified backup(s)")
        assert "3 are needed" in reason
    assert not Alert.objects.exists() and not Incident.objects.exists()
    assert suspicious_gauge("shop-db") is None
    assert AuditRecord.objects.filter(
        object_type="backups.backup",
        object_id=str(backups[2].pk),
        message__startswith="Compared with history: Not judged",
    ).exists()


def test_a_backup_in_line_with_its_history_raises_nothing(shop_database):
    for _ in range(3):
        back_up(shop_database)
    query(ANOMALY_DB, "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid <= 1000")

    backup = back_up(shop_database)

    assert backup.history_check == HistoryCheck.NORMAL
    assert backup.history_warnings == []
    assert backup.history_checked_at is not None
    assert backup.history_incident_id is None
    assert not Alert.objects.exists() and not Incident.objects.exists()
    assert suspicious_gauge("shop-db") == "0.0"


def test_a_dropped_large_table_makes_the_backup_suspicious_alerts_the_dbas_and_shows(
    shop_database,
):
    load_defaults()
    Team.objects.filter(responsibility=Responsibility.DATABASE).update(email="dba@example.com")
    for _ in range(4):
        back_up(shop_database)
    query(ANOMALY_DB, "DROP TABLE pgbench_accounts")

    backup = back_up(shop_database)

    assert backup.history_check == HistoryCheck.SUSPICIOUS
    warnings = " ".join(backup.history_warnings)
    assert "KiB, under half the median" in warnings
    assert "Table public.pgbench_accounts is missing (it had 100,000 rows" in warnings
    # The alert went through incident handling's usual rules: one incident, category
    # database, the DBAs paged by its routing.
    incident = Incident.objects.get(pk=backup.history_incident_id)
    assert incident.title == f"Suspicious backup #{backup.pk} of shop-db"
    assert (incident.severity, incident.category) == ("sev2", "database")
    assert "pgbench_accounts is missing" in incident.symptoms
    assert list(incident.affected_systems.values_list("name", flat=True)) == ["shop-db"]
    [alert] = Alert.objects.filter(fingerprint=alert_fingerprint_for(backup))
    assert (alert.status, alert.source, alert.incident_id) == ("firing", "backups", incident.pk)
    pages = Notification.objects.filter(responsibility=Responsibility.DATABASE)
    assert [n.recipient for n in pages] == ["dba@example.com"]
    assert f"incident #{incident.pk}" in pages[0].subject
    assert suspicious_gauge("shop-db") == "1.0"
    assert AuditRecord.objects.filter(
        object_type="backups.backup",
        object_id=str(backup.pk),
        outcome="failure",
        message__contains="Suspicious: The dump is",
    ).exists()

    # The backup's admin page and list say so, for the database admins.
    client = client_in_group("Database admins")
    page = client.get(reverse("admin:backups_backup_change", args=[backup.pk]))
    assert page.status_code == 200
    body = page.content.decode()
    assert "Table public.pgbench_accounts is missing" in body
    assert f"incident #{incident.pk}" in body
    listing = client.get(reverse("admin:backups_backup_changelist") + "?history_check=suspicious")
    assert listing.status_code == 200
    assert [b.pk for b in listing.context["cl"].result_list] == [backup.pk]
    assert "Suspicious" in listing.content.decode()

    # Still far smaller than the median the next night: it joins the open incident.
    again = back_up(shop_database)
    assert again.history_check == HistoryCheck.SUSPICIOUS
    assert "missing" not in " ".join(again.history_warnings)  # gone since the previous one
    assert again.history_incident_id == incident.pk
    assert Incident.objects.count() == 1

    # The table is back: the next backup is in line again, and the incident's timeline says
    # so (resolving it stays the DBAs' decision).
    pgbench_init(ANOMALY_DB, 1)
    restored = back_up(shop_database)
    assert restored.history_check == HistoryCheck.NORMAL, restored.history_warnings
    assert suspicious_gauge("shop-db") == "0.0"
    resolved = Alert.objects.get(fingerprint=alert_fingerprint_for(backup), status="resolved")
    assert resolved.incident_id == incident.pk
    incident.refresh_from_db()
    assert incident.status == "open"


def test_most_rows_deleted_from_a_table_against_the_plans_threshold(shop_database):
    for _ in range(3):
        back_up(shop_database)
    query(ANOMALY_DB, "DELETE FROM pgbench_accounts WHERE aid > 30000")  # 70 % of the rows

    backup = back_up(shop_database)

    assert backup.history_check == HistoryCheck.SUSPICIOUS
    [row_finding] = [w for w in backup.history_warnings if w.startswith("Table ")]
    assert row_finding == (
        "Table public.pgbench_accounts has 30,000 rows, down 70 % from 100,000 in the "
        "previous backup (more than 50 %)."
    )
    # The plan's threshold: at 80 % a 70 % drop is not a finding.
    plan = backup.plan
    plan.suspicious_row_drop_percent = 80
    services.backup_plan_save(plan=plan)
    backup.refresh_from_db()
    services.backup_compare_with_history(backup=backup)
    assert not [w for w in backup.history_warnings if w.startswith("Table ")]


def test_a_backup_that_failed_verification_is_not_compared(shop_database):
    for _ in range(3):
        back_up(shop_database)
    backup = services.backup_request(database=shop_database)
    run_backup.apply(args=[backup.pk])
    backup.refresh_from_db()
    Backup.objects.filter(pk=backup.pk).update(
        verification=Verification.FAILED, history_check=HistoryCheck.PENDING
    )
    backup.refresh_from_db()

    services.backup_compare_with_history(backup=backup)

    backup.refresh_from_db()
    assert backup.history_check == HistoryCheck.PENDING
    assert backup.get_history_check_display() == "Not compared yet"


# --- the judgement on figures alone --------------------------------------------------------


def figures(size=100_000_000, seconds=60.0, **rows) -> BackupFigures:
    return BackupFigures(
        size_bytes=size, duration_seconds=seconds, table_row_counts=rows or {"t": 1000}
    )


def test_a_fast_backup_is_judged_against_the_median_time_of_the_last_seven():
    earlier = [figures(seconds=s) for s in (60, 62, 58, 1, 1, 61, 59, 1, 1, 1)]  # newest first

    # The median of the newest seven is 59 s: under a fifth of it is suspicious.
    [finding] = services.backup_history_findings(current=figures(seconds=11), earlier=earlier)
    assert finding == (
        "It took 11.0 s, under a fifth of the usual 59.0 s (median of the last 7 backups)."
    )
    assert services.backup_history_findings(current=figures(seconds=12), earlier=earlier) == []
    # Sub-second dumps are noise, not a usual time.
    quick = [figures(seconds=0.9)] * 3
    assert services.backup_history_findings(current=figures(seconds=0.01), earlier=quick) == []


def test_size_rows_and_small_tables():
    earlier = [figures(size=s, big=10_000, small=50) for s in (100, 100, 90)]

    assert (
        services.backup_history_findings(
            current=figures(size=50, big=5_000, small=0), earlier=earlier
        )
        == []
    )  # 50 is not under half of 100; 50 % is not more than 50 %; 50 rows are too few
    findings = services.backup_history_findings(
        current=figures(size=49, big=4_999, small=0), earlier=earlier, row_drop_percent=50
    )
    assert [f.split(",")[0].split(" has")[0] for f in findings] == [
        "The dump is 49 bytes",
        "Table big",
    ]
    # 100 % turns the row check off; a table that disappeared is still reported.
    assert (
        services.backup_history_findings(
            current=figures(size=100, big=0, small=50), earlier=earlier, row_drop_percent=100
        )
        == []
    )
    assert services.backup_history_findings(
        current=figures(size=100, small=50), earlier=earlier, row_drop_percent=100
    ) == ["Table big is missing (it had 10,000 rows in the previous backup)."]
    with pytest.raises(ValueError, match="needs 3 earlier backups"):
        services.backup_history_findings(current=figures(), earlier=earlier[:2])
