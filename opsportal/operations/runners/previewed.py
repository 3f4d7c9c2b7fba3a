"""Running an operation against the preview its requester confirmed: end only the sessions
and statements they saw (those still there), and say what differed between the preview
and now (sessions that are new and were left alone, ones that are gone, a container whose
state changed, a key count that moved). Without a preview the runner acts as before."""

from __future__ import annotations

from collections.abc import Callable

from opsportal.operations.runners.outcome import Outcome, _table
from opsportal.operations.runners.targets import resolve_container
from opsportal.systems.adapters import docker_engine, pg_preview
from opsportal.systems.adapters.errors import AdapterError

_STATEMENT_KINDS = {"db_cancel_queries": False, "db_terminate_queries": True}
_CONTAINER_KINDS = {
    "container_restart",
    "container_stop",
    "container_start",
    "container_update_limits",
    "container_isolate",
}


def _pids(rows: list[dict]) -> str:
    return ", ".join(str(r["pid"]) for r in rows[:50]) + (" …" if len(rows) > 50 else "")


def _differences(seen: list[str], rows: list[dict], done_flag: str, verb: str) -> list[str]:
    now = {r["key"] for r in rows}
    new = [r for r in rows if r["key"] not in set(seen)]
    gone = [key for key in seen if key not in now]
    lines = []
    if new:
        lines.append(
            f"{len(new)} not in the preview you confirmed, so not {verb}: pids {_pids(new)}."
        )
    if gone:
        lines.append(
            f"{len(gone)} you saw had ended or no longer matched: pids "
            + ", ".join(key.split("@")[0] for key in gone[:50])
            + (" …" if len(gone) > 50 else "")
            + "."
        )
    if not new and not gone:
        lines.append("Nothing differed from the preview you confirmed.")
    return lines


def _terminate_idle(operation) -> Outcome:
    database, params, preview = operation.target.specific(), operation.params, operation.preview
    found = pg_preview.terminate_seen_idle(
        database,
        seen=preview["seen"],
        idle_seconds=params.get("idle_seconds", 0),
        state=params.get("state", "any"),
        application_name=params.get("application_name", ""),
        user=params.get("user", ""),
    )
    done = [r for r in found.rows if r["terminated"]]
    for row in found.rows:
        row["idle_seconds"] = round(row["idle_seconds"], 1)
    state, application, user = (
        params.get("state", "any"),
        params.get("application_name", ""),
        params.get("user", ""),
    )
    what = {"any": "idle", "idle": "idle", "idle in transaction": "idle in a transaction"}[state]
    whose = " and ".join(
        part
        for part in (
            f"of application {application!r}" if application else "",
            f"of user {user!r}" if user else "",
        )
        if part
    )
    lines = [
        f"Terminated {len(done)} connections {whose + ' ' if whose else ''}{what} for at "
        f"least {params.get('idle_seconds', 0):g} s on {database.name} (never the portal's "
        f"own): those of the {len(preview['seen'])} in the preview you confirmed that were "
        "still there.",
        *_differences(preview["seen"], found.rows, "terminated", "terminated"),
    ]
    if done:
        lines.append(_table(done, ["pid", "state", "idle_seconds", "user", "application"]))
    lines.append(f"Connected by {found.access.method} as {found.access.user!r}.")
    return Outcome(
        "\n".join(lines),
        {
            "terminated": done,
            "not_in_preview": [r["pid"] for r in found.rows if r["key"] not in preview["seen"]],
            "gone": [
                k.split("@")[0] for k in preview["seen"] if k not in {r["key"] for r in found.rows}
            ],
            "access": found.access.as_dict(),
        },
    )


def _signal_statements(operation) -> Outcome:
    database, params, preview = operation.target.specific(), operation.params, operation.preview
    terminate = _STATEMENT_KINDS[operation.kind]
    pids = params.get("pids") or []
    found = pg_preview.signal_seen_statements(
        database,
        seen=preview["seen"],
        pids=pids,
        min_seconds=None if pids else params.get("min_seconds"),
        terminate=terminate,
    )
    verb = "terminated" if terminate else "cancelled"
    done = [r for r in found.rows if r["signalled"]]
    which = (
        f"pids {', '.join(map(str, pids))}"
        if pids
        else f"running over {params.get('min_seconds'):g} s"
    )
    lines = [
        f"{verb.capitalize()} {len(done)} of {len(found.rows)} queries ({which}) on "
        f"{database.name}: those of the {len(preview['seen'])} in the preview you confirmed "
        "that were still running.",
        *_differences(preview["seen"], found.rows, "signalled", verb),
    ]
    if done:
        lines.append(_table(done, ["pid", "user", "state", "query"]))
    return Outcome(
        "\n".join(lines),
        {
            "signalled": done,
            "not_in_preview": [r["pid"] for r in found.rows if r["key"] not in preview["seen"]],
            "access": found.access.as_dict(),
        },
    )


def _container_drift(operation) -> list[str]:
    """The containers' state now against the preview's, read just before acting."""
    seen = operation.preview.get("containers") or {}
    if not seen:
        return []
    engine, name = resolve_container(operation.target, operation.params)
    try:
        rows = docker_engine.containers_touched(engine, name)
    except AdapterError as exc:
        return [f"Before acting, the container could not be read again: {exc}"]
    lines = []
    for row in rows:
        before = seen.get(row["name"])
        if before is None:
            lines.append(f"{row['name']} was not in the preview.")
        elif before["id"] != row["id"]:
            # The container the person confirmed no longer exists: acting on its successor
            # is not what they saw (a deploy may have just replaced it). Nothing is done.
            raise AdapterError(
                f"Not run: {row['name']} is another container than in the preview you "
                f"confirmed (id {before['id']} then, {row['id']} now: it was recreated "
                "meanwhile). Open the step again to see the new one and confirm it."
            )
        elif before["state"] != row["state"]:
            lines.append(
                f"{row['name']} was {before['state']} in the preview and {row['state']} just "
                "before acting."
            )
    return lines or ["The container was as in the preview you confirmed."]


def run_against_preview(runner: Callable[..., Outcome], operation) -> Outcome:
    """Run `operation` acting on what its preview showed, when it has one that was read."""
    preview = operation.preview or {}
    if not preview:
        return runner(operation.target, operation.params, operation)
    if preview.get("failed"):
        outcome = runner(operation.target, operation.params, operation)
        outcome.output = (
            f"No preview was seen (it failed: {preview['failed']}); ran on the parameters, "
            f"as the reason given says.\n{outcome.output}"
        )
        return outcome
    if operation.kind == "db_terminate_idle" and "seen" in preview:
        return _terminate_idle(operation)
    if operation.kind in _STATEMENT_KINDS and "seen" in preview:
        return _signal_statements(operation)
    drift = _container_drift(operation) if operation.kind in _CONTAINER_KINDS else []
    outcome = runner(operation.target, operation.params, operation)
    if operation.kind == "cache_clear" and "count" in preview:
        removed = outcome.result.get("removed")
        counted = preview["count"]
        bound = "" if preview.get("complete") else "at least "
        drift.append(
            f"The preview counted {bound}{counted} matching keys; {removed} were removed"
            + (
                "."
                if removed == counted
                else f" ({'more' if removed > counted else 'fewer'}: keys changed meanwhile)."
            )
        )
    if operation.kind == "service_scale" and "replicas_before" in preview:
        before = outcome.result.get("replicas_before")
        if before != preview["replicas_before"]:
            drift.append(
                f"The preview showed {preview['replicas_before']} replicas; there were "
                f"{before} when scaling."
            )
    if drift:
        outcome.output = outcome.output + "\nAgainst the preview: " + " ".join(drift)
        outcome.result = {**outcome.result, "preview_differences": drift}
    return outcome
