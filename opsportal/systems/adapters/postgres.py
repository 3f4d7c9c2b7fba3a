"""Adapter for the PostgreSQL databases the portal operates on (psycopg 3)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

from opsportal.systems.adapters import docker_engine
from opsportal.systems.adapters.errors import (
    AdapterError,
    AuthenticationFailed,
    NotFound,
    OperationFailed,
    TimedOut,
    Unreachable,
)
from opsportal.systems.adapters.results import PingResult

if TYPE_CHECKING:
    from opsportal.systems.models import PostgresDatabase

APPLICATION_NAME = "opsportal"
# Other client sessions than the one asking.
_CLIENTS = "backend_type = 'client backend' AND pid <> pg_backend_pid()"


def resolve_host(database: PostgresDatabase) -> str:
    if database.host:
        return database.host
    if database.runs_in_container:
        return docker_engine.container_address(database.docker_engine, database.container_name)
    raise OperationFailed(
        f"Database {database.name} has neither a host nor a container to connect to."
    )


def describe(database: PostgresDatabase, host: str | None = None) -> str:
    return (
        f"PostgreSQL {database.name} ({host or database.host or database.container_name}:"
        f"{database.port}/{database.dbname})"
    )


def translate_error(
    database: PostgresDatabase, exc: Exception, host: str = "", user: str | None = None
) -> AdapterError:
    where = describe(database, host)
    user = user or database.username
    if isinstance(exc, AdapterError):
        return exc
    text = str(exc).strip()
    lowered = text.lower()
    if "password authentication failed" in lowered or "no password supplied" in lowered:
        return AuthenticationFailed(f"{where} rejected the password for user {user!r}.")
    if "does not exist" in lowered and "database" in lowered:
        return NotFound(f"{where}: database {database.dbname!r} does not exist.")
    if "role" in lowered and "does not exist" in lowered:
        return AuthenticationFailed(f"{where}: user {user!r} does not exist.")
    if "timeout expired" in lowered or "timed out" in lowered:
        return TimedOut(f"{where} did not answer within {database.connect_timeout_seconds} s.")
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return TimedOut(f"{where}: the statement ran past its time limit and was cancelled.")
    if (
        "connection refused" in lowered
        or "could not connect" in lowered
        or "no such file" in lowered
        or "name or service not known" in lowered
    ):
        return Unreachable(f"{where} is not reachable: {_reason(text)}")
    if ("too many" in lowered and "connections" in lowered) or "slots are reserved" in lowered:
        return OperationFailed(f"{where} has too many connections: {_reason(text)}")
    if isinstance(exc, psycopg.OperationalError):
        return Unreachable(f"{where}: {_reason(text)}")
    return OperationFailed(f"{where}: {_reason(text)}")


def _reason(text: str) -> str:
    # libpq prefixes with 'connection failed: connection to server at "h" (ip), port p failed:'
    last = text.strip().splitlines()[0] if text.strip() else "unknown error"
    if "failed:" in last:
        last = last.rsplit("failed:", 1)[1].strip()
    return last[:300]


@contextmanager
def connect(
    database: PostgresDatabase,
    *,
    dbname: str | None = None,
    statement_timeout_ms: int = 30_000,
    autocommit: bool = True,
    as_operator: bool = False,
) -> Iterator[psycopg.Connection]:
    """A connection as the registered user, or with `as_operator` as the registration's
    operator credential (see operator_access)."""
    host = ""
    user, password = database.username, database.password
    if as_operator:
        user, password = database.operator_username, database.operator_password
    try:
        host = resolve_host(database)
        conn = psycopg.connect(
            host=host,
            port=database.port,
            dbname=dbname or database.dbname,
            user=user,
            password=password or None,
            sslmode=database.sslmode,
            connect_timeout=database.connect_timeout_seconds,
            application_name=APPLICATION_NAME,
            options=f"-c statement_timeout={int(statement_timeout_ms)}",
            autocommit=autocommit,
        )
    except Exception as exc:
        raise translate_error(database, exc, host, user) from exc
    try:
        yield conn
    except AdapterError:
        raise
    except psycopg.Error as exc:
        raise translate_error(database, exc, host, user) from exc
    finally:
        conn.close()


def ping(database: PostgresDatabase) -> PingResult:
    with connect(database, statement_timeout_ms=5000) as conn:
        row = conn.execute(
            "SELECT current_setting('server_version'), "
            "current_setting('max_connections')::int, "
            "(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'), "
            "pg_database_size(current_database())"
        ).fetchone()
    version, max_connections, connections, size = row
    summary = (
        f"PostgreSQL {version}: {connections}/{max_connections} connections, "
        f"database {size / 1_048_576:.1f} MiB"
    )
    details = {
        "server_version": version,
        "max_connections": max_connections,
        "connections": connections,
        "database_size_bytes": size,
    }
    if database.operator_username:
        # Found out now, not in the incident that needs it. The database itself answered,
        # so a broken operator credential is reported, not a failed check.
        details["operator"] = operator_check(database)
        summary += f"; operator credential: {details['operator']}"
    return PingResult(summary=summary, details=details)


def operator_check(database: PostgresDatabase) -> str:
    """Whether the operator credential logs in and can do what it is there for."""
    try:
        with connect(database, statement_timeout_ms=5000, as_operator=True) as conn:
            superuser, signal, reserved = conn.execute(
                "SELECT rolsuper, pg_has_role(oid, 'pg_signal_backend', 'MEMBER'),"
                " coalesce((SELECT pg_has_role(r.oid, g.oid, 'MEMBER') FROM pg_roles g"
                "  WHERE g.rolname = 'pg_use_reserved_connections'), false)"
                " FROM pg_roles r WHERE rolname = current_user"
            ).fetchone()
    except AdapterError as exc:
        return f"FAILED: {exc}"
    user = database.operator_username
    if superuser:
        return f"{user!r} OK (a superuser: can use the reserved slots and end any session)"
    if not signal:
        return (
            f"{user!r} logs in but is neither a superuser nor a member of pg_signal_backend: "
            "it cannot end other users' sessions"
        )
    if not reserved:
        return (
            f"{user!r} OK for ending sessions (pg_signal_backend), but it cannot use the "
            "reserved slots (only superusers, or on PostgreSQL 16+ members of "
            "pg_use_reserved_connections, can): it gets in only while a slot is free"
        )
    return f"{user!r} OK (pg_signal_backend and pg_use_reserved_connections)"


# --- backups: the dump's snapshot, row counts, sessions, scratch databases ----------------

_COUNTABLE_TABLES = """
SELECT n.nspname, c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp%%'
  AND NOT EXISTS (
    SELECT 1 FROM pg_depend d
    WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2
"""


def table_row_counts(conn: psycopg.Connection) -> dict[str, int]:
    """Rows per ordinary table ("schema.table"), as the connection's snapshot sees them.

    Takes an open connection (from connect() or DumpSnapshot) so the counts can be taken
    inside a snapshot shared with pg_dump."""
    counts = {}
    for schema, table in conn.execute(_COUNTABLE_TABLES).fetchall():
        query = sql.SQL("SELECT count(*) FROM ONLY {}.{}").format(
            sql.Identifier(schema), sql.Identifier(table)
        )
        counts[f"{schema}.{table}"] = conn.execute(query).fetchone()[0]
    return counts


@dataclass(frozen=True)
class DumpSnapshot:
    connection: psycopg.Connection
    snapshot: str
    server_version: str


@contextmanager
def dump_snapshot(
    database: PostgresDatabase, *, statement_timeout_ms: int
) -> Iterator[DumpSnapshot]:
    """A read-only repeatable-read transaction whose snapshot is exported for pg_dump
    (--snapshot), so figures taken on `connection` describe exactly what is dumped."""
    with connect(database, statement_timeout_ms=statement_timeout_ms) as conn:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        # The counts run beside pg_dump, which with its server process already keeps
        # two cores busy: one backend without parallel workers or JIT takes the least
        # CPU from the dump (measured with bench/backups.py).
        conn.execute("SET LOCAL max_parallel_workers_per_gather = 0")
        conn.execute("SET LOCAL jit = off")
        snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
        version = conn.execute("SHOW server_version").fetchone()[0]
        # The exported snapshot lives only while this transaction is open.
        yield DumpSnapshot(conn, snapshot, version)
        conn.execute("COMMIT")


def other_client_sessions(database: PostgresDatabase) -> list[tuple[int, str, str]]:
    """(pid, user, application) of every other client session connected to this database."""
    with connect(database, statement_timeout_ms=10_000) as conn:
        return conn.execute(
            f"SELECT pid, coalesce(usename, ''), coalesce(application_name, '')"  # noqa: S608 (a constant)
            f" FROM pg_stat_activity WHERE {_CLIENTS} AND datname = current_database()"
        ).fetchall()


def terminate_other_client_sessions(database: PostgresDatabase) -> int:
    """End every other client session of this database (before a restore); how many."""
    with connect(database, statement_timeout_ms=10_000) as conn:
        rows = conn.execute(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity"  # noqa: S608 (a constant)
            f" WHERE {_CLIENTS} AND datname = current_database()"
        ).fetchall()
    return len(rows)


def _on_server(database: PostgresDatabase):
    # CREATE/DROP DATABASE cannot run in the database itself; the server's "postgres"
    # database is there on every installation.
    return connect(database, dbname="postgres", statement_timeout_ms=60_000)


def scratch_database_create(database: PostgresDatabase, *, name: str) -> None:
    """An empty database `name` on the same server as `database` (a restore drill's)."""
    with _on_server(database) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))


def scratch_database_drop(database: PostgresDatabase, *, name: str) -> None:
    """Drop `name` on `database`'s server, ending its sessions; no error if it is gone."""
    with _on_server(database) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
