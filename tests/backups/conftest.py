"""Real databases for the backup tests: a pgbench-filled source and an empty second one."""

from __future__ import annotations

import os
import subprocess

import psycopg
import pytest

from opsportal.systems.models import PostgresDatabase

PREFIX = os.environ.get("OPSPORTAL_TEST_TARGET_DB", "opsportal_target")
SOURCE_DB = f"{PREFIX}_bk_src"
SECOND_DB = f"{PREFIX}_bk_dst"


def admin_dsn() -> str:
    return os.environ["OPSPORTAL_TEST_PG_DSN"]


def recreate_database(name: str) -> None:
    with psycopg.connect(admin_dsn(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def query(dbname: str, statement: str, params=None):
    dsn = admin_dsn().rsplit("/", 1)[0] + "/" + dbname
    with psycopg.connect(dsn, autocommit=True) as conn:
        cursor = conn.execute(statement, params)
        return cursor.fetchall() if cursor.description else None


def table_contents_digest(dbname: str) -> dict[str, tuple[int, str]]:
    """Row count and an md5 over every row, per pgbench table: equal means same contents."""
    digests = {}
    for table in ("pgbench_accounts", "pgbench_branches", "pgbench_tellers", "pgbench_history"):
        statement = (
            "SELECT count(*), coalesce(md5(string_agg(t::text, ',' ORDER BY t::text)), '') "
            "FROM " + table + " t"
        )
        [(count, digest)] = query(dbname, statement)
        digests[table] = (count, digest)
    return digests


def pgbench_init(dbname: str, scale: int) -> None:
    info = psycopg.conninfo.conninfo_to_dict(admin_dsn())
    subprocess.run(
        [
            "pgbench",
            "-i",
            "-q",
            "-s",
            str(scale),
            "-h",
            info.get("host", "127.0.0.1"),
            "-p",
            str(info.get("port", 5432)),
            "-U",
            info.get("user", "postgres"),
            dbname,
        ],
        check=True,
        capture_output=True,
    )


@pytest.fixture(scope="session")
def pgbench_source_db() -> str:
    recreate_database(SOURCE_DB)
    pgbench_init(SOURCE_DB, 1)
    # A few history rows and a second schema, so more than pgbench's defaults is proven.
    query(
        SOURCE_DB,
        "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) "
        "SELECT 1, 1, g, g, now() FROM generate_series(1, 250) g",
    )
    query(SOURCE_DB, "CREATE SCHEMA audit_trail")
    query(SOURCE_DB, 'CREATE TABLE audit_trail."Odd Name" (id int primary key, note text)')
    query(
        SOURCE_DB,
        "INSERT INTO audit_trail.\"Odd Name\" SELECT g, 'note ' || g FROM generate_series(1, 42) g",
    )
    yield SOURCE_DB
    with psycopg.connect(admin_dsn(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{SOURCE_DB}" WITH (FORCE)')


def _register(name: str, dbname: str, **extra) -> PostgresDatabase:
    info = psycopg.conninfo.conninfo_to_dict(admin_dsn())
    fields = {
        "host": info.get("host", "127.0.0.1"),
        "port": int(info.get("port", 5432)),
        "username": info.get("user", "postgres"),
        "connect_timeout_seconds": 3,
        **extra,
    }
    return PostgresDatabase.objects.create(name=name, dbname=dbname, **fields)


@pytest.fixture
def source_database(db, pgbench_source_db) -> PostgresDatabase:
    return _register("orders-db", pgbench_source_db)


@pytest.fixture
def second_database(db) -> PostgresDatabase:
    recreate_database(SECOND_DB)
    yield _register("orders-db-copy", SECOND_DB)
    with psycopg.connect(admin_dsn(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{SECOND_DB}" WITH (FORCE)')


@pytest.fixture
def register_database(db):
    return _register


@pytest.fixture(autouse=True)
def backup_root(settings, tmp_path):
    settings.BACKUP_ROOT = tmp_path / "backups"
    return settings.BACKUP_ROOT


def second_dba_approves(restore) -> None:
    """Restores need a second person's approval by default (issue 14): another DBA gives it."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from opsportal.approvals.services import approval_decide, approval_for

    second, _ = get_user_model().objects.get_or_create(username="second-dba")
    second.groups.add(Group.objects.get(name="Database admins"))
    approval_decide(
        approval=approval_for(restore), actor=second, approve=True, reason="checked it too"
    )
