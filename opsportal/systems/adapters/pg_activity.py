"""The server's sessions (pg_stat_activity) as the runbook's database steps and monitoring
see them: who holds the connections and how close the application's user is to being
refused, ending sessions, statistics — and the way in that still works when the
application holds every slot its user may have (operator credential, docker exec, or the
registered user), which every result names."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

from opsportal.systems.adapters import docker_engine
from opsportal.systems.adapters.errors import AdapterError, NotFound, OperationFailed
from opsportal.systems.adapters.postgres import (
    _CLIENTS,
    APPLICATION_NAME,
    _reason,
    connect,
    describe,
    translate_error,
)

if TYPE_CHECKING:
    from opsportal.systems.models import PostgresDatabase

# --- the operator's way in: which credential database operations use ------------------
# When the application holds every connection slot its user may have, connecting as that
# user fails ("remaining connection slots are reserved"), exactly when the runbook's
# "Restart database connections" is needed. Operations therefore prefer a way in that does
# not need one of the application's slots.

OPERATOR_CREDENTIAL = "operator credential"
DOCKER_EXEC = "docker exec"
REGISTERED_USER = "registered user"

# The runbook's own commands (`docker exec <container> psql -U postgres …`) connect as this
# user over the container's local socket, which the official image trusts.
CONTAINER_SUPERUSER = "postgres"


@dataclass(frozen=True)
class OperatorAccess:
    """How an operation reaches the database, and why this way (shown in its output)."""

    method: str
    user: str
    reason: str

    @property
    def sentence(self) -> str:
        return f"Connected by {self.method} as {self.user!r}: {self.reason}"

    def as_dict(self) -> dict:
        return {"method": self.method, "user": self.user, "reason": self.reason}


def operator_access(
    database: PostgresDatabase,
    *,
    allow_docker_exec: bool = True,
    allow_operator_credential: bool = True,
) -> OperatorAccess:
    """The operator credential if the registration has one, else psql inside the database's
    container if it runs in one, else the registered user."""
    if database.operator_username and not allow_operator_credential:
        return OperatorAccess(
            REGISTERED_USER,
            database.username,
            "routine reads use the registered user; the operator credential only when this "
            "user is refused.",
        )
    if database.operator_username:
        return OperatorAccess(
            OPERATOR_CREDENTIAL,
            database.operator_username,
            "the registration's operator credential; as a superuser (or, on PostgreSQL 16+, "
            "a member of pg_use_reserved_connections) it can use the reserved connection "
            "slots, so it gets in even when the application holds every other one.",
        )
    if allow_docker_exec and database.runs_in_container:
        return OperatorAccess(
            DOCKER_EXEC,
            CONTAINER_SUPERUSER,
            f"no operator credential is registered, and {database.name} runs in container "
            f"{database.container_name!r} on {database.docker_engine.name}, so psql ran "
            "there over the server's local socket (as the runbook's `docker exec … psql -U "
            "postgres` does); a superuser can use the reserved slots.",
        )
    return OperatorAccess(
        REGISTERED_USER,
        database.username,
        "no operator credential is registered and the database does not run in a container "
        "the portal knows; if the application has used up the connections this user may "
        "have, this fails: register an operator credential on the database's page.",
    )


def _inline(query: str, params: Sequence) -> str:
    """`query` with its %s placeholders replaced by SQL literals (for psql -c)."""
    values = iter(params)

    def literal(match: re.Match) -> str:
        if match.group(0) == "%%":
            return "%"
        return sql.Literal(next(values)).as_string(None)

    return re.sub(r"%%|%s", literal, query)


class OperatorSession:
    """Runs an operation's statements by the chosen way in; rows come back as dicts."""

    def __init__(self, database: PostgresDatabase, access: OperatorAccess, timeout_ms: int):
        self.database = database
        self.access = access
        self.timeout_ms = timeout_ms
        self._conn: psycopg.Connection | None = None

    def rows(self, query: str, params: Sequence = ()) -> list[dict]:
        if self._conn is not None:
            cursor = self._conn.execute(query, list(params))
            columns = [c.name for c in cursor.description]
            return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
        return self._rows_in_container(query, params)

    def _rows_in_container(self, query: str, params: Sequence) -> list[dict]:
        database = self.database
        statement = (
            "SELECT coalesce(json_agg(q), '[]'::json) FROM ("  # noqa: S608 (the adapter's own)
            + _inline(query, params)
            + ") q"
        )
        command = ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-U"]
        command += [self.access.user, "-p", str(database.port), "-d", database.dbname]
        command += ["-c", statement]
        environment = {
            "PGAPPNAME": APPLICATION_NAME,
            "PGCONNECT_TIMEOUT": str(database.connect_timeout_seconds),
            "PGOPTIONS": f"-c statement_timeout={int(self.timeout_ms)}",
        }
        output = bytearray()
        exit_code, messages = docker_engine.exec_stream(
            database.docker_engine,
            database.container_name,
            command,
            environment=environment,
            stdout_sink=output.extend,
            stream_timeout_seconds=self.timeout_ms / 1000 + database.connect_timeout_seconds + 5,
        )
        where = f"psql in container {database.container_name!r}"
        if exit_code in (126, 127):
            raise OperationFailed(
                f"{where} could not be run (exit {exit_code}): is psql installed there? "
                f"{_reason(messages)}"
            )
        if exit_code != 0:
            error = translate_error(database, Exception(messages), "local socket", self.access.user)
            raise type(error)(f"{where}: {error}")
        try:
            return json.loads(output.decode() or "[]")
        except ValueError as exc:
            raise OperationFailed(f"{where} answered something else than rows: {exc}") from exc


@contextmanager
def operator_session(
    database: PostgresDatabase,
    *,
    statement_timeout_ms: int = 10_000,
    allow_docker_exec: bool = True,
    allow_operator_credential: bool = True,
) -> Iterator[OperatorSession]:
    access = operator_access(
        database,
        allow_docker_exec=allow_docker_exec,
        allow_operator_credential=allow_operator_credential,
    )
    if access.method != DOCKER_EXEC:
        opened = contextlib.ExitStack()
        try:
            conn = opened.enter_context(
                connect(
                    database,
                    statement_timeout_ms=statement_timeout_ms,
                    as_operator=access.method == OPERATOR_CREDENTIAL,
                )
            )
        except AdapterError as exc:
            opened.close()
            if not (
                access.method == OPERATOR_CREDENTIAL
                and allow_docker_exec
                and database.runs_in_container
            ):
                raise _tried(exc, access) from exc
            # A wrong operator password, or a role that cannot use the reserved slots on
            # this version, must not leave an exhausted database without its fix when psql
            # inside its container can still get in.
            access = OperatorAccess(
                DOCKER_EXEC,
                CONTAINER_SUPERUSER,
                f"the operator credential was refused ({_reason(str(exc))}), and "
                f"{database.name} runs in container {database.container_name!r} on "
                f"{database.docker_engine.name}, so psql ran there over the server's local "
                "socket instead (a superuser can use the reserved slots).",
            )
        else:
            session = OperatorSession(database, access, statement_timeout_ms)
            session._conn = conn
            try:
                with opened:
                    yield session
            except AdapterError as exc:
                raise _tried(exc, access) from exc
            return
    try:
        yield OperatorSession(database, access, statement_timeout_ms)
    except AdapterError as exc:
        raise _tried(exc, access) from exc


def _tried(exc: AdapterError, access: OperatorAccess) -> AdapterError:
    """The failure, saying which way in was tried and why that one."""
    return type(exc)(f"{exc} (Tried by {access.method} as {access.user!r}: {access.reason})")


@dataclass(frozen=True)
class OperatorResult:
    rows: list[dict]
    access: OperatorAccess


# --- monitoring: connection states, long-running queries, the user's connection ceiling -----


@dataclass(frozen=True)
class ConnectionCeiling:
    """How close the registered user is to being refused a connection.

    A user that is not a superuser cannot have the superuser_reserved_connections slots
    (nor, on PostgreSQL 16+, the reserved_connections ones unless it is a member of
    pg_use_reserved_connections): "Too many connections" comes at max_connections minus
    those, or earlier at its role's or database's connection limit."""

    usable: int  # the slots of the nearest limit
    in_use: int  # of those, held by other sessions now (not the portal's own)
    limit: str  # which limit is nearest: "server", "role" or "database"
    user_is_superuser: bool
    superuser_reserved_connections: int
    reserved_connections: int

    @property
    def available(self) -> int:
        return max(self.usable - self.in_use, 0)

    @property
    def used_percent(self) -> float:
        return round(self.in_use / self.usable * 100, 3) if self.usable > 0 else 100.0


_CEILING = """
SELECT current_setting('max_connections')::int AS max_connections,
  current_setting('superuser_reserved_connections')::int AS superuser_reserved,
  coalesce(current_setting('reserved_connections', true)::int, 0) AS reserved,
  coalesce(r.rolsuper, false) AS user_is_superuser,
  coalesce((SELECT pg_has_role(r.oid, g.oid, 'MEMBER') FROM pg_roles g
            WHERE g.rolname = 'pg_use_reserved_connections'), false) AS may_use_reserved,
  coalesce(r.rolconnlimit, -1) AS role_limit,
  (SELECT datconnlimit FROM pg_database WHERE datname = current_database()) AS database_limit,
  (SELECT count(*) FROM pg_stat_activity a WHERE {clients}) AS server_connections,
  (SELECT count(*) FROM pg_stat_activity a WHERE {clients} AND a.usename = %s)
    AS user_connections,
  (SELECT count(*) FROM pg_stat_activity a WHERE {clients}
    AND a.datname = current_database()) AS database_connections
FROM (SELECT 1) one LEFT JOIN pg_roles r ON r.rolname = %s
"""


def _ceiling(row: dict) -> ConnectionCeiling:
    superuser = row["user_is_superuser"]
    reserved = 0 if superuser else row["superuser_reserved"]
    if not superuser and not row["may_use_reserved"]:
        reserved += row["reserved"]
    limits = [("server", row["max_connections"] - reserved, row["server_connections"])]
    if not superuser:  # connection limits do not apply to superusers
        if row["role_limit"] >= 0:
            limits.append(("role", row["role_limit"], row["user_connections"]))
        if row["database_limit"] is not None and row["database_limit"] >= 0:
            limits.append(("database", row["database_limit"], row["database_connections"]))
    # The nearest limit: the fewest slots left, and of those the fullest.
    name, usable, in_use = min(
        limits, key=lambda lim: (lim[1] - lim[2], -(lim[2] / lim[1] if lim[1] > 0 else 1))
    )
    return ConnectionCeiling(
        usable=usable,
        in_use=in_use,
        limit=name,
        user_is_superuser=superuser,
        superuser_reserved_connections=row["superuser_reserved"],
        reserved_connections=row["reserved"],
    )


def connection_ceiling(session: OperatorSession) -> ConnectionCeiling:
    """The registered user's connection ceiling, read through `session`."""
    user = session.database.username
    (row,) = session.rows(_CEILING.format(clients=_CLIENTS_A), [user, user])
    return _ceiling(row)


@dataclass(frozen=True)
class ConnectionFigures:
    """Client connections of the whole server (max_connections is server-wide), and the
    ceiling of the registered user's."""

    active: int
    idle: int
    idle_in_transaction: int
    waiting: int
    max_connections: int
    long_running_queries: int
    ceiling: ConnectionCeiling | None = None
    access: OperatorAccess | None = None

    @property
    def total(self) -> int:
        return self.active + self.idle + self.idle_in_transaction


def connection_figures(
    database: PostgresDatabase, *, long_running_seconds: float = 60.0
) -> ConnectionFigures:
    """Connections by state against max_connections, lock waiters, queries running longer
    than `long_running_seconds` (the runbook's "Monitor active connections"), and the
    slots the registered user can still get.

    Read as the registered user (the least privilege that sees it), and when that user is
    refused (the application has used up its slots) with the operator credential if there
    is one, which can use the reserved slots. Never by docker exec: monitoring runs every
    few seconds."""
    try:
        return _connection_figures(
            database, long_running_seconds=long_running_seconds, allow_operator_credential=False
        )
    except OperationFailed as exc:
        if not database.operator_username or "too many connections" not in str(exc):
            raise
    return _connection_figures(database, long_running_seconds=long_running_seconds)


def _connection_figures(
    database: PostgresDatabase, *, long_running_seconds: float, allow_operator_credential=True
) -> ConnectionFigures:
    with operator_session(
        database,
        statement_timeout_ms=5000,
        allow_docker_exec=False,
        allow_operator_credential=allow_operator_credential,
    ) as session:
        (row,) = session.rows(
            "SELECT"
            " count(*) FILTER (WHERE state = 'active') AS active,"
            " count(*) FILTER (WHERE state = 'idle') AS idle,"
            " count(*) FILTER (WHERE state LIKE 'idle in transaction%%') AS idle_in_transaction,"
            " count(*) FILTER (WHERE wait_event_type = 'Lock') AS waiting,"
            " current_setting('max_connections')::int AS max_connections,"
            " count(*) FILTER (WHERE state = 'active'"
            "   AND now() - query_start > make_interval(secs => %s)) AS long_running"
            " FROM pg_stat_activity"
            " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
            [long_running_seconds],
        )
        ceiling = connection_ceiling(session)
    return ConnectionFigures(
        active=row["active"],
        idle=row["idle"],
        idle_in_transaction=row["idle_in_transaction"],
        waiting=row["waiting"],
        max_connections=row["max_connections"],
        long_running_queries=row["long_running"],
        ceiling=ceiling,
        access=session.access,
    )


# --- operations: connections, long queries, cancel/terminate, statistics ------------------
# (the runbook's "Database Connection Issues"; all run through operator_session)

_CLIENTS_A = "a.backend_type = 'client backend' AND a.pid <> pg_backend_pid()"
# The portal's own sessions (monitoring, a backup's pg_dump and its snapshot) are never
# terminated by a connection clean-up.
_NOT_THE_PORTAL = f"coalesce(application_name, '') <> '{APPLICATION_NAME}'"


def connection_summary(database: PostgresDatabase) -> dict:
    """Client connections of the server by state, user, application and database, against
    max_connections and against the slots the registered user can get (the runbook's
    "Check connection pool status")."""
    with operator_session(database) as session:
        (settings,) = session.rows(
            "SELECT current_setting('max_connections')::int AS max_connections,"
            " current_setting('superuser_reserved_connections')::int AS reserved"
        )

        def grouped(column: str) -> list[list]:
            return [
                [row["name"], row["count"]]
                for row in session.rows(
                    f"SELECT coalesce({column}::text, '(none)') AS name, count(*) AS count"  # noqa: S608 (column names are constants)
                    f" FROM pg_stat_activity WHERE {_CLIENTS} GROUP BY 1 ORDER BY 2 DESC, 1"
                )
            ]

        by_state = grouped("state")
        by_user = grouped("usename")
        by_application = grouped("nullif(application_name, '')")
        by_database = grouped("datname")
        ceiling = connection_ceiling(session)
    max_connections = settings["max_connections"]
    total = sum(count for _, count in by_state)
    return {
        "max_connections": max_connections,
        "superuser_reserved_connections": settings["reserved"],
        "reserved_connections": ceiling.reserved_connections,
        "total": total,
        "used_percent": round(total / max_connections * 100, 1) if max_connections else None,
        "usable_by_user": ceiling.usable,
        "usable_limit": ceiling.limit,
        "available_to_user": ceiling.available,
        "usable_percent": round(ceiling.used_percent, 1),
        "registered_user": database.username,
        "registered_user_is_superuser": ceiling.user_is_superuser,
        "by_state": by_state,
        "by_user": by_user,
        "by_application": by_application,
        "by_database": by_database,
        "access": session.access.as_dict(),
    }


def long_running_queries(database: PostgresDatabase, *, min_seconds: float) -> OperatorResult:
    """Statements in this database running for more than `min_seconds`, longest first."""
    with operator_session(database) as session:
        rows = session.rows(
            "SELECT pid, usename AS user, application_name AS application,"  # noqa: S608 (constants)
            " host(client_addr) AS client, state,"
            " extract(epoch FROM now() - query_start)::float8 AS seconds,"
            " wait_event_type AS waiting_on, left(query, 500) AS query"
            f" FROM pg_stat_activity WHERE {_CLIENTS} AND datname = current_database()"
            " AND state NOT IN ('idle') AND query_start IS NOT NULL"
            " AND now() - query_start > make_interval(secs => %s)"
            " ORDER BY query_start",
            [min_seconds],
        )
    return OperatorResult(rows, session.access)


def signal_backends(
    database: PostgresDatabase,
    *,
    pids: list[int] | None = None,
    min_seconds: float | None = None,
    terminate: bool = False,
) -> OperatorResult:
    """Cancel (or terminate) the named backends, or every statement of this database running
    longer than `min_seconds`; only client backends of this database, never the portal's own."""
    if not pids and min_seconds is None:
        raise OperationFailed("Name the backends (pids) or a threshold (min_seconds) to act on.")
    function = "pg_terminate_backend" if terminate else "pg_cancel_backend"
    # Named pids are the operator's choice; a threshold never reaches the portal's own
    # sessions (a backup's pg_dump runs long on purpose).
    condition = (
        "pid = ANY(%s::int[])"
        if pids
        else (
            f"{_NOT_THE_PORTAL} AND state NOT IN ('idle')"
            " AND now() - query_start > make_interval(secs => %s)"
        )
    )
    with operator_session(database) as session:
        rows = session.rows(
            "SELECT pid, usename AS user, state,"  # noqa: S608 (function and condition are constants)
            " extract(epoch FROM now() - query_start)::float8 AS seconds,"
            f" left(query, 300) AS query, {function}(pid) AS signalled FROM pg_stat_activity"
            f" WHERE {_CLIENTS} AND datname = current_database() AND {condition}"
            " ORDER BY query_start",
            [list(pids) if pids else min_seconds],
        )
    found = {row["pid"] for row in rows}
    if pids:
        missing = [pid for pid in pids if pid not in found]
        if missing and not rows:
            raise NotFound(
                f"{describe(database)}: no client backend of this database has pid "
                f"{', '.join(map(str, missing))} (it finished, or belongs elsewhere)."
            )
    for pid in pids or []:
        if pid not in found:
            rows.append({"pid": pid, "signalled": False, "query": "(no such backend)"})
    return OperatorResult(rows, session.access)


IDLE_STATES = {
    "any": ["idle", "idle in transaction", "idle in transaction (aborted)"],
    "idle": ["idle"],
    "idle in transaction": ["idle in transaction", "idle in transaction (aborted)"],
}


def terminate_idle_connections(
    database: PostgresDatabase,
    *,
    idle_seconds: float,
    state: str = "any",
    application_name: str = "",
    user: str = "",
) -> OperatorResult:
    """Terminate this database's connections idle (or idle in a transaction) for at least
    `idle_seconds`, only those of `application_name` and/or `user` when given, never the
    portal's own (the runbook's "Restart database connections")."""
    conditions, params = (
        ["state = ANY(%s)", "now() - state_change >= make_interval(secs => %s)"],
        [
            IDLE_STATES[state],
            idle_seconds,
        ],
    )
    if application_name:
        conditions.append("application_name = %s")
        params.append(application_name)
    if user:
        conditions.append("usename = %s")
        params.append(user)
    with operator_session(database) as session:
        rows = session.rows(
            "SELECT pid, usename AS user, application_name AS application, state,"  # noqa: S608 (constants)
            " extract(epoch FROM now() - state_change)::float8 AS idle_seconds,"
            " pg_terminate_backend(pid) AS terminated"
            f" FROM pg_stat_activity WHERE {_CLIENTS} AND {_NOT_THE_PORTAL}"
            " AND datname = current_database() AND "
            + " AND ".join(conditions)
            + " ORDER BY state_change",
            params,
        )
    return OperatorResult(rows, session.access)


def database_statistics(database: PostgresDatabase) -> dict:
    """Size, cache hit ratio, transactions, deadlocks, temp files and the largest tables."""
    with operator_session(database, statement_timeout_ms=15_000) as session:
        (stats,) = session.rows(
            "SELECT pg_database_size(current_database()) AS size_bytes,"
            " numbackends AS connections, xact_commit AS commits, xact_rollback AS rollbacks,"
            " blks_read AS blocks_read, blks_hit AS blocks_hit, tup_returned AS rows_returned,"
            " tup_fetched AS rows_fetched, tup_inserted AS rows_inserted,"
            " tup_updated AS rows_updated, tup_deleted AS rows_deleted, conflicts,"
            " temp_files, temp_bytes, deadlocks, stats_reset::text AS stats_reset"
            " FROM pg_stat_database WHERE datname = current_database()"
        )
        tables = session.rows(
            "SELECT relname AS table, pg_total_relation_size(relid) AS size_bytes,"
            " n_live_tup AS live_rows, n_dead_tup AS dead_rows, seq_scan AS seq_scans,"
            " idx_scan AS index_scans FROM pg_stat_user_tables"
            " ORDER BY pg_total_relation_size(relid) DESC LIMIT 10"
        )
    reads = (stats["blocks_read"] or 0) + (stats["blocks_hit"] or 0)
    stats["cache_hit_ratio"] = round(stats["blocks_hit"] / reads, 4) if reads else None
    stats["largest_tables"] = tables
    stats["access"] = session.access.as_dict()
    return stats
