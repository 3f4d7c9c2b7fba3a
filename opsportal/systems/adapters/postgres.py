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


def translate_error(database: PostgresDatabase, exc: Exception, host: str = "") -> AdapterError:
    where = describe(database, host)
    if isinstance(exc, AdapterError):
        return exc
    text = str(exc).strip()
    lowered = text.lower()
    if "password authentication failed" in lowered or "no password supplied" in lowered:
        return AuthenticationFailed(
            f"{where} rejected the password for user {database.username!r}."
        )
    if "does not exist" in lowered and "database" in lowered:
        return NotFound(f"{where}: database {database.dbname!r} does not exist.")
    if "role" in lowered and "does not exist" in lowered:
        return AuthenticationFailed(f"{where}: user {database.username!r} does not exist.")
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
    if "too many" in lowered and "connections" in lowered:
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
) -> Iterator[psycopg.Connection]:
    host = ""
    try:
        host = resolve_host(database)
        conn = psycopg.connect(
            host=host,
            port=database.port,
            dbname=dbname or database.dbname,
            user=database.username,
            password=database.password or None,
            sslmode=database.sslmode,
            connect_timeout=database.connect_timeout_seconds,
            application_name=APPLICATION_NAME,
            options=f"-c statement_timeout={int(statement_timeout_ms)}",
            autocommit=autocommit,
        )
    except Exception as exc:
        raise translate_error(database, exc, host) from exc
    try:
        yield conn
    except AdapterError:
        raise
    except psycopg.Error as exc:
        raise translate_error(database, exc, host) from exc
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
    return PingResult(
        summary=(
            f"PostgreSQL {version}: {connections}/{max_connections} connections, "
            f"database {size / 1_048_576:.1f} MiB"
        ),
        details={
            "server_version": version,
            "max_connections": max_connections,
            "connections": connections,
            "database_size_bytes": size,
        },
    )


# --- monitoring: connection states and long-running queries (appended for monitoring) ------


@dataclass(frozen=True)
class ConnectionFigures:
    """Client connections of the whole server (max_connections is server-wide)."""

    active: int
    idle: int
    idle_in_transaction: int
    waiting: int
    max_connections: int
    long_running_queries: int

    @property
    def total(self) -> int:
        return self.active + self.idle + self.idle_in_transaction


def connection_figures(
    database: PostgresDatabase, *, long_running_seconds: float = 60.0
) -> ConnectionFigures:
    """Connections by state against max_connections, lock waiters, and queries running
    longer than `long_running_seconds` (the runbook's "Monitor active connections")."""
    with connect(database, statement_timeout_ms=5000) as conn:
        row = conn.execute(
            "SELECT"
            " count(*) FILTER (WHERE state = 'active'),"
            " count(*) FILTER (WHERE state = 'idle'),"
            " count(*) FILTER (WHERE state LIKE 'idle in transaction%%'),"
            " count(*) FILTER (WHERE wait_event_type = 'Lock'),"
            " current_setting('max_connections')::int,"
            " count(*) FILTER (WHERE state = 'active'"
            "   AND now() - query_start > make_interval(secs => %s))"
            " FROM pg_stat_activity"
            " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
            [long_running_seconds],
        ).fetchone()
    active, idle, idle_in_transaction, waiting, max_connections, long_running = row
    return ConnectionFigures(
        active=active,
        idle=idle,
        idle_in_transaction=idle_in_transaction,
        waiting=waiting,
        max_connections=max_connections,
        long_running_queries=long_running,
    )


# --- operations: connections, long queries, cancel/terminate, statistics ------------------
# (appended for opsportal.operations; the runbook's "Database Connection Issues")

_CLIENTS = "backend_type = 'client backend' AND pid <> pg_backend_pid()"


def connection_summary(database: PostgresDatabase) -> dict:
    """Client connections of the server by state, user, application and database, against
    max_connections (the runbook's "Check connection pool status")."""
    with connect(database, statement_timeout_ms=10_000) as conn:
        max_connections, reserved = conn.execute(
            "SELECT current_setting('max_connections')::int,"
            " current_setting('superuser_reserved_connections')::int"
        ).fetchone()

        def grouped(column: str) -> list[list]:
            return [
                list(row)
                for row in conn.execute(
                    f"SELECT coalesce({column}::text, '(none)'), count(*) FROM pg_stat_activity"  # noqa: S608 (column names are constants)
                    f" WHERE {_CLIENTS} GROUP BY 1 ORDER BY 2 DESC, 1"
                ).fetchall()
            ]

        by_state = grouped("state")
        by_user = grouped("usename")
        by_application = grouped("nullif(application_name, '')")
        by_database = grouped("datname")
    total = sum(count for _, count in by_state)
    return {
        "max_connections": max_connections,
        "superuser_reserved_connections": reserved,
        "total": total,
        "used_percent": round(total / max_connections * 100, 1) if max_connections else None,
        "by_state": by_state,
        "by_user": by_user,
        "by_application": by_application,
        "by_database": by_database,
    }


def long_running_queries(database: PostgresDatabase, *, min_seconds: float) -> list[dict]:
    """Statements in this database running for more than `min_seconds`, longest first."""
    with connect(database, statement_timeout_ms=10_000) as conn:
        rows = conn.execute(
            "SELECT pid, usename, application_name, host(client_addr), state,"
            " extract(epoch FROM now() - query_start)::float8, wait_event_type, left(query, 500)"
            " FROM pg_stat_activity WHERE backend_type = 'client backend'"
            " AND pid <> pg_backend_pid() AND datname = current_database()"
            " AND state NOT IN ('idle') AND query_start IS NOT NULL"
            " AND now() - query_start > make_interval(secs => %s)"
            " ORDER BY query_start",
            [min_seconds],
        ).fetchall()
    keys = ["pid", "user", "application", "client", "state", "seconds", "waiting_on", "query"]
    return [dict(zip(keys, row, strict=True)) for row in rows]


def signal_backends(
    database: PostgresDatabase,
    *,
    pids: list[int] | None = None,
    min_seconds: float | None = None,
    terminate: bool = False,
) -> list[dict]:
    """Cancel (or terminate) the named backends, or every statement of this database running
    longer than `min_seconds`; only client backends of this database, never the portal's own."""
    if not pids and min_seconds is None:
        raise OperationFailed("Name the backends (pids) or a threshold (min_seconds) to act on.")
    function = "pg_terminate_backend" if terminate else "pg_cancel_backend"
    condition = (
        "pid = ANY(%s)"
        if pids
        else ("state NOT IN ('idle') AND now() - query_start > make_interval(secs => %s)")
    )
    with connect(database, statement_timeout_ms=10_000) as conn:
        rows = conn.execute(
            f"SELECT pid, usename, state, extract(epoch FROM now() - query_start)::float8,"  # noqa: S608 (function and condition are constants)
            f" left(query, 300), {function}(pid) FROM pg_stat_activity"
            f" WHERE {_CLIENTS} AND datname = current_database() AND {condition}"
            " ORDER BY query_start",
            [list(pids) if pids else min_seconds],
        ).fetchall()
    found = {row[0] for row in rows}
    if pids:
        missing = [pid for pid in pids if pid not in found]
        if missing and not rows:
            raise NotFound(
                f"{describe(database)}: no client backend of this database has pid "
                f"{', '.join(map(str, missing))} (it finished, or belongs elsewhere)."
            )
    keys = ["pid", "user", "state", "seconds", "query", "signalled"]
    result = [dict(zip(keys, row, strict=True)) for row in rows]
    for pid in pids or []:
        if pid not in found:
            result.append({"pid": pid, "signalled": False, "query": "(no such backend)"})
    return result


def terminate_idle_connections(
    database: PostgresDatabase, *, idle_seconds: float, state: str = "any"
) -> list[dict]:
    """Terminate this database's connections idle (or idle in a transaction) for longer than
    `idle_seconds` (the runbook's "Restart database connections")."""
    states = {
        "any": ["idle", "idle in transaction", "idle in transaction (aborted)"],
        "idle": ["idle"],
        "idle in transaction": ["idle in transaction", "idle in transaction (aborted)"],
    }[state]
    with connect(database, statement_timeout_ms=10_000) as conn:
        rows = conn.execute(
            "SELECT pid, usename, application_name, state,"
            " extract(epoch FROM now() - state_change)::float8, pg_terminate_backend(pid)"
            " FROM pg_stat_activity WHERE backend_type = 'client backend'"
            " AND pid <> pg_backend_pid() AND datname = current_database()"
            " AND state = ANY(%s) AND now() - state_change > make_interval(secs => %s)"
            " ORDER BY state_change",
            [states, idle_seconds],
        ).fetchall()
    keys = ["pid", "user", "application", "state", "idle_seconds", "terminated"]
    return [dict(zip(keys, row, strict=True)) for row in rows]


def database_statistics(database: PostgresDatabase) -> dict:
    """Size, cache hit ratio, transactions, deadlocks, temp files and the largest tables."""
    with connect(database, statement_timeout_ms=15_000) as conn:
        row = conn.execute(
            "SELECT pg_database_size(current_database()), numbackends, xact_commit,"
            " xact_rollback, blks_read, blks_hit, tup_returned, tup_fetched, tup_inserted,"
            " tup_updated, tup_deleted, conflicts, temp_files, temp_bytes, deadlocks,"
            " stats_reset FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
        tables = conn.execute(
            "SELECT relname, pg_total_relation_size(relid), n_live_tup, n_dead_tup,"
            " seq_scan, idx_scan FROM pg_stat_user_tables"
            " ORDER BY pg_total_relation_size(relid) DESC LIMIT 10"
        ).fetchall()
    keys = [
        "size_bytes",
        "connections",
        "commits",
        "rollbacks",
        "blocks_read",
        "blocks_hit",
        "rows_returned",
        "rows_fetched",
        "rows_inserted",
        "rows_updated",
        "rows_deleted",
        "conflicts",
        "temp_files",
        "temp_bytes",
        "deadlocks",
        "stats_reset",
    ]
    stats = dict(zip(keys, row, strict=True))
    stats["stats_reset"] = stats["stats_reset"].isoformat() if stats["stats_reset"] else None
    reads = (stats["blocks_read"] or 0) + (stats["blocks_hit"] or 0)
    stats["cache_hit_ratio"] = round(stats["blocks_hit"] / reads, 4) if reads else None
    stats["largest_tables"] = [
        dict(
            zip(
                ["table", "size_bytes", "live_rows", "dead_rows", "seq_scans", "index_scans"],
                t,
                strict=True,
            )
        )
        for t in tables
    ]
    return stats


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
