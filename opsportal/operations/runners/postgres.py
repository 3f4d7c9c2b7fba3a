"""Runners that act on a PostgreSQL database: connections, queries, statistics, its logs."""

from __future__ import annotations

from opsportal.operations.runners.outcome import Outcome, _mib, _table
from opsportal.operations.runners.targets import InvalidTarget
from opsportal.systems.adapters import docker_engine, pg_activity
from opsportal.systems.models import PostgresDatabase


def _database(target) -> PostgresDatabase:
    return target.specific()


def _access_line(access: dict | pg_activity.OperatorAccess) -> str:
    if isinstance(access, dict):
        access = pg_activity.OperatorAccess(**access)
    return access.sentence


def run_db_connections(target, params, operation) -> Outcome:
    database = _database(target)
    summary = pg_activity.connection_summary(database)
    reserved = summary["superuser_reserved_connections"] + summary["reserved_connections"]
    user = summary["registered_user"]
    lines = [
        f"{summary['total']} of {summary['max_connections']} connections in use "
        f"({summary['used_percent']}%; {reserved} reserved "
        "for superusers) on the server of " + database.name + ".",
        f"The registered user {user!r} can get {summary['usable_by_user']} "
        + (
            "(it is a superuser)"
            if summary["registered_user_is_superuser"]
            else f"(the {summary['usable_limit']}'s limit)"
        )
        + f": {summary['usable_percent']}% used, {summary['available_to_user']} left"
        + (" — new connections of the application are refused." if not
           summary["available_to_user"] else "."),
    ]  # fmt: skip
    for title, key in [
        ("By state", "by_state"),
        ("By user", "by_user"),
        ("By application", "by_application"),
        ("By database", "by_database"),
    ]:
        lines.append(
            f"{title}: " + (", ".join(f"{name} {count}" for name, count in summary[key]) or "—")
        )
    lines.append(_access_line(summary["access"]))
    return Outcome("\n".join(lines), summary)


def run_db_long_queries(target, params, operation) -> Outcome:
    database = _database(target)
    found = pg_activity.long_running_queries(database, min_seconds=params["min_seconds"])
    rows = found.rows
    for row in rows:
        row["seconds"] = round(row["seconds"], 1)
    text = f"{len(rows)} statements running longer than {params['min_seconds']:g} s on " + (
        f"{database.name}:\n"
        + _table(rows, ["pid", "seconds", "state", "user", "application", "waiting_on", "query"])
    )
    return Outcome(
        text + "\n" + found.access.sentence,
        {"queries": rows, "access": found.access.as_dict()},
    )


def _run_signal(target, params, terminate: bool) -> Outcome:
    database = _database(target)
    pids, min_seconds = params.get("pids") or [], params.get("min_seconds")
    if not pids and min_seconds is None:
        raise InvalidTarget(
            "Name the queries to stop (pids) or a threshold (min_seconds): stopping every "
            "query of a database is never what the runbook means."
        )
    signalled = pg_activity.signal_backends(
        database, pids=pids, min_seconds=None if pids else min_seconds, terminate=terminate
    )
    rows = signalled.rows
    verb = "Terminated" if terminate else "Cancelled"
    done = [r for r in rows if r["signalled"]]
    which = f"pids {', '.join(map(str, pids))}" if pids else f"running over {min_seconds:g} s"
    text = f"{verb} {len(done)} of {len(rows)} queries ({which}) on {database.name}"
    if not rows:
        text = f"No query on {database.name} is {which}; nothing was {verb.lower()}."
    for row in rows:
        if row.get("seconds") is not None:
            row["seconds"] = round(row["seconds"], 1)
    return Outcome(
        text
        + ("\n" + _table(rows, ["pid", "signalled", "seconds", "user", "query"]) if rows else "")
        + "\n"
        + signalled.access.sentence,
        {"signalled": rows, "access": signalled.access.as_dict()},
    )


def run_db_cancel_queries(target, params, operation) -> Outcome:
    return _run_signal(target, params, terminate=False)


def run_db_terminate_queries(target, params, operation) -> Outcome:
    return _run_signal(target, params, terminate=True)


def run_db_terminate_idle(target, params, operation) -> Outcome:
    database = _database(target)
    state = params.get("state", "any")
    application, user = params.get("application_name", ""), params.get("user", "")
    idle_seconds = params.get("idle_seconds", 0)
    terminated = pg_activity.terminate_idle_connections(
        database,
        idle_seconds=idle_seconds,
        state=state,
        application_name=application,
        user=user,
    )
    rows = terminated.rows
    for row in rows:
        row["idle_seconds"] = round(row["idle_seconds"], 1)
    what = {"any": "idle", "idle": "idle", "idle in transaction": "idle in a transaction"}[state]
    whose = " and ".join(
        part
        for part in (
            f"of application {application!r}" if application else "",
            f"of user {user!r}" if user else "",
        )
        if part
    )
    text = (
        f"Terminated {sum(1 for r in rows if r['terminated'])} connections "
        f"{whose + ' ' if whose else ''}{what} for at least {idle_seconds:g} s on "
        f"{database.name} (never the portal's own)."
    )
    if rows:
        text += "\n" + _table(rows, ["pid", "state", "idle_seconds", "user", "application"])
    text += "\n" + terminated.access.sentence
    return Outcome(text, {"terminated": rows, "access": terminated.access.as_dict()})


def run_db_statistics(target, params, operation) -> Outcome:
    database = _database(target)
    stats = pg_activity.database_statistics(database)
    ratio = stats["cache_hit_ratio"]
    text = (
        f"{database.name}: {_mib(stats['size_bytes'])}, {stats['connections']} connections, "
        f"cache hit ratio {'—' if ratio is None else f'{ratio:.2%}'}, "
        f"{stats['commits']} commits / {stats['rollbacks']} rollbacks, "
        f"{stats['deadlocks']} deadlocks, {stats['temp_files']} temp files "
        f"({_mib(stats['temp_bytes'])}) since {stats['stats_reset'] or 'the statistics began'}."
        "\nLargest tables:\n"
        + _table(
            stats["largest_tables"],
            ["table", "size_bytes", "live_rows", "dead_rows", "seq_scans", "index_scans"],
        )
        + "\n"
        + _access_line(stats["access"])
    )
    return Outcome(text, stats)


def run_db_container_logs(target, params, operation) -> Outcome:
    database = _database(target)
    if not database.runs_in_container:
        raise InvalidTarget(
            f"{database.name} does not run in a container the portal knows, so its logs "
            "cannot be read here: set its Docker engine and container name."
        )
    text = docker_engine.container_logs(
        database.docker_engine, database.container_name, lines=params.get("lines", 200)
    )
    return Outcome(
        f"Last {text.count(chr(10))} log lines of {database.container_name}:\n"
        + (text or "(no log output)"),
        {"lines": text.count("\n")},
    )
