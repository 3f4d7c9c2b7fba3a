"""Adapter for the PostgreSQL databases the portal operates on (psycopg 3)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psycopg

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
