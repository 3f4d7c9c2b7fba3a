"""Backups through the API: "back up now" queues a backup as the admin's action does, and
the newest verified backup of each database is what a real, verified dump left."""

from __future__ import annotations

import psycopg
import pytest

from backups.models import Backup, BackupMethod
from backups.services import (
    backup_plan_ensure,
    backup_plan_save,
    backup_run_now,
    drill_request,
    drill_run,
)
from opsportal.systems.models import PostgresDatabase

pytestmark = pytest.mark.django_db


@pytest.fixture
def database(target_database_dsn):
    info = psycopg.conninfo.conninfo_to_dict(target_database_dsn)
    database = PostgresDatabase.objects.create(
        name="orders-db",
        host=info.get("host", "127.0.0.1"),
        port=int(info.get("port", 5432)),
        dbname=info["dbname"],
        username=info.get("user", "postgres"),
        connect_timeout_seconds=2,
    )
    plan = backup_plan_ensure(database=database)
    plan.method = BackupMethod.NETWORK
    backup_plan_save(plan=plan)
    return database


def test_back_up_now_and_the_newest_verified_backup(api_client, database):
    client, user, _ = api_client("Database admins")
    assert client.get("/api/v1/backups/latest-verified/").json() == []
    older = backup_run_now(database=database, actor=user, reason="first")
    newer = backup_run_now(database=database, actor=user, reason="second")
    assert older.verification == newer.verification == "verified", newer.verification_message
    latest = client.get("/api/v1/backups/latest-verified/").json()
    assert [(b["id"], b["database"], b["verification"]) for b in latest] == [
        (newer.pk, "orders-db", "verified")
    ]
    answer = client.post("/api/v1/backups/", {"database": "orders-db", "reason": "before deploy"})
    assert answer.status_code == 202, answer.content
    queued = Backup.objects.get(pk=answer.json()["id"])
    assert queued.status == "queued" and queued.requested_by == user
    assert queued.reason == "before deploy" and queued.trigger == "manual"
    listed = client.get("/api/v1/backups/", {"database": "orders-db", "status": "queued"}).json()
    assert [b["id"] for b in listed["results"]] == [queued.pk]
    # Not a database the portal knows: refused, nothing queued.
    refused = client.post("/api/v1/backups/", {"database": "nope"})
    assert refused.status_code == 400 and "database" in refused.json()["fields"]
    assert Backup.objects.count() == 3


def test_a_restore_drill_reads_back_with_its_comparison(api_client, database):
    client, _, _ = api_client("Viewers")
    backup = backup_run_now(database=database, actor=None, reason="nightly")
    assert backup.verification == "verified", backup.verification_message
    drill = drill_request(backup=backup)
    drill_run(drill_id=drill.pk)
    drill.refresh_from_db()
    assert drill.status == "succeeded", drill.message

    listed = client.get("/api/v1/restore-drills/", {"database": "orders-db"}).json()["results"]
    assert [d["id"] for d in listed] == [drill.pk]
    read = client.get(f"/api/v1/restore-drills/{drill.pk}/").json()
    assert (read["backup"], read["database"], read["status"]) == (
        backup.pk,
        "orders-db",
        "succeeded",
    )
    assert read["tables_compared"] == len(backup.table_row_counts) and read["mismatches"] == {}
    assert read["finished_at"] and read["duration_seconds"] >= 0
    assert client.get(f"/api/v1/backups/{backup.pk}/").json()["drill_result"] == "passed"
    assert client.get("/api/v1/restore-drills/", {"backup": backup.pk + 1}).json()["results"] == []
