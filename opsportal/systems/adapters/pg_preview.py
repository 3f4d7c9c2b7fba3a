"""What a connection or query clean-up would touch, read before the person confirms, and
acting afterwards on exactly what they saw.

A session is known by its pid and the moment it started (a pid is reused once its backend
ends); a statement by its pid and the moment the statement started. Those keys travel from
the preview to the confirmation and back: the clean-up ends only sessions whose key the
person saw and that still fit the filter, and names the ones that are new or gone."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from opsportal.systems.adapters.pg_activity import (
    _NOT_THE_PORTAL,
    IDLE_STATES,
    OperatorAccess,
    operator_session,
)
from opsportal.systems.adapters.postgres import _CLIENTS

if TYPE_CHECKING:
    from opsportal.systems.models import PostgresDatabase

# A preview lists at most this many sessions (the oldest first); the rest are counted.
PREVIEW_ROW_LIMIT = 1000

_SESSION_KEY = "pid::text || '@' || extract(epoch FROM backend_start)::numeric::text"
_STATEMENT_KEY = "pid::text || '@' || extract(epoch FROM query_start)::numeric::text"


@dataclass(frozen=True)
class SessionList:
    """Rows (each with its `key`), how many matched in all, and how the database was read."""

    rows: list[dict]
    total: int
    access: OperatorAccess


def _idle_condition(
    *, idle_seconds: float, state: str, application_name: str, user: str
) -> tuple[str, list]:
    conditions = [
        _CLIENTS,
        _NOT_THE_PORTAL,
        "datname = current_database()",
        "state = ANY(%s)",
        "now() - state_change >= make_interval(secs => %s)",
    ]
    params: list = [IDLE_STATES[state], idle_seconds]
    if application_name:
        conditions.append("application_name = %s")
        params.append(application_name)
    if user:
        conditions.append("usename = %s")
        params.append(user)
    return " AND ".join(conditions), params


_IDLE_COLUMNS = (
    f"pid, {_SESSION_KEY} AS key, usename AS user, application_name AS application, state,"
    " host(client_addr) AS client,"
    " extract(epoch FROM now() - state_change)::float8 AS idle_seconds"
)


def idle_connections(
    database: PostgresDatabase,
    *,
    idle_seconds: float,
    state: str = "any",
    application_name: str = "",
    user: str = "",
    limit: int = PREVIEW_ROW_LIMIT,
) -> SessionList:
    """The sessions "Terminate idle connections" with these filters would end now."""
    condition, params = _idle_condition(
        idle_seconds=idle_seconds, state=state, application_name=application_name, user=user
    )
    with operator_session(database) as session:
        rows = session.rows(
            f"SELECT {_IDLE_COLUMNS}, count(*) OVER () AS total"  # noqa: S608 (constants)
            f" FROM pg_stat_activity WHERE {condition} ORDER BY state_change, pid LIMIT %s",
            [*params, limit],
        )
    return SessionList(rows, rows[0]["total"] if rows else 0, session.access)


def terminate_seen_idle(
    database: PostgresDatabase,
    *,
    seen: Sequence[str],
    idle_seconds: float,
    state: str = "any",
    application_name: str = "",
    user: str = "",
) -> SessionList:
    """End the sessions the person saw (by key) that still fit the filter; every session
    fitting it now comes back, `terminated` saying whether it was ended (a session that
    was not in the preview is left alone)."""
    condition, params = _idle_condition(
        idle_seconds=idle_seconds, state=state, application_name=application_name, user=user
    )
    with operator_session(database) as session:
        rows = session.rows(
            f"SELECT {_IDLE_COLUMNS}, CASE WHEN {_SESSION_KEY} = ANY(%s)"  # noqa: S608 (constants)
            " THEN pg_terminate_backend(pid) ELSE false END AS terminated"
            f" FROM pg_stat_activity WHERE {condition} ORDER BY state_change, pid",
            [list(seen), *params],
        )
    return SessionList(rows, len(rows), session.access)


def _statement_condition(*, pids: Sequence[int], min_seconds: float | None) -> tuple[str, list]:
    base = f"{_CLIENTS} AND datname = current_database()"
    if pids:
        return f"{base} AND pid = ANY(%s::int[])", [list(pids)]
    return (
        f"{base} AND {_NOT_THE_PORTAL} AND state NOT IN ('idle') AND query_start IS NOT NULL"
        " AND now() - query_start > make_interval(secs => %s)",
        [min_seconds],
    )


_STATEMENT_COLUMNS = (
    f"pid, {_STATEMENT_KEY} AS key, usename AS user, application_name AS application, state,"
    " extract(epoch FROM now() - query_start)::float8 AS seconds, left(query, 300) AS query"
)


def statements_to_signal(
    database: PostgresDatabase,
    *,
    pids: Sequence[int] = (),
    min_seconds: float | None = None,
    limit: int = PREVIEW_ROW_LIMIT,
) -> SessionList:
    """The statements "Cancel queries" / "Terminate queries" would stop now: the named
    backends, or every statement running longer than `min_seconds` (never the portal's)."""
    condition, params = _statement_condition(pids=pids, min_seconds=min_seconds)
    with operator_session(database) as session:
        rows = session.rows(
            f"SELECT {_STATEMENT_COLUMNS}, count(*) OVER () AS total"  # noqa: S608 (constants)
            f" FROM pg_stat_activity WHERE {condition} ORDER BY query_start, pid LIMIT %s",
            [*params, limit],
        )
    return SessionList(rows, rows[0]["total"] if rows else 0, session.access)


def signal_seen_statements(
    database: PostgresDatabase,
    *,
    seen: Sequence[str],
    pids: Sequence[int] = (),
    min_seconds: float | None = None,
    terminate: bool = False,
) -> SessionList:
    """Cancel (or terminate) the statements the person saw that are still running; the
    statements fitting the request now come back with `signalled`."""
    function = "pg_terminate_backend" if terminate else "pg_cancel_backend"
    condition, params = _statement_condition(pids=pids, min_seconds=min_seconds)
    with operator_session(database) as session:
        rows = session.rows(
            f"SELECT {_STATEMENT_COLUMNS}, CASE WHEN {_STATEMENT_KEY} = ANY(%s)"  # noqa: S608 (constants)
            f" THEN {function}(pid) ELSE false END AS signalled"
            f" FROM pg_stat_activity WHERE {condition} ORDER BY query_start, pid",
            [list(seen), *params],
        )
    return SessionList(rows, len(rows), session.access)


def database_size(database: PostgresDatabase) -> dict:
    """The database's size now, its number of tables and of other sessions connected."""
    with operator_session(database, statement_timeout_ms=5_000) as session:
        (row,) = session.rows(
            "SELECT pg_database_size(current_database())::bigint AS size_bytes,"  # noqa: S608 (constants)
            " (SELECT count(*) FROM pg_stat_user_tables)::int AS tables,"
            f" (SELECT count(*) FROM pg_stat_activity WHERE {_CLIENTS}"
            " AND datname = current_database())::int AS sessions"
        )
    row["access"] = session.access.as_dict()
    return row
