"""What a changing operation would do to the real system right now, read live before the
person confirms: the connections "Terminate idle connections" would end, the statements a
cancel or terminate would stop, the keys a cache pattern matches, the containers a restart,
stop or scale would touch.

The preview travels with the confirmation as a signed token (bound to the person, the
kind, the system and the parameters it was read for), is stored on the operation, and the
runner acts on what it lists (runners/previewed.py), saying what differed. A preview that
cannot be read (the system does not answer) says so and why; the operation can then still
run, with a reason.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.core import signing
from django.utils import timezone

from opsportal.operations.kinds import KINDS
from opsportal.operations.masking import mask_credentials, mask_structure
from opsportal.operations.runners.targets import InvalidTarget, resolve_container, resolve_engine
from opsportal.systems.adapters import docker_engine, pg_preview, redis_cache
from opsportal.systems.adapters.errors import AdapterError

logger = logging.getLogger(__name__)

# A preview older than this is read again before the operation may run.
PREVIEW_MAX_AGE_SECONDS = 15 * 60
# Rows shown on the confirmation page (all rows up to pg_preview.PREVIEW_ROW_LIMIT are
# still acted on and counted).
PREVIEW_SHOWN_ROWS = 100
# A cache pattern is counted for at most this long (SCAN, never KEYS).
CACHE_COUNT_SECONDS = 1.5
_SALT = "opsportal.operations.preview"
# Parameters that change how, not what, an operation acts on: a preview stays valid when
# only these differ.
_NOT_PREVIEWED = {"timeout_seconds"}


def _bound_params(params: dict) -> dict:
    return {k: v for k, v in sorted(params.items()) if k not in _NOT_PREVIEWED}


def _connections(target, params: dict) -> dict:
    database = target.specific()
    found = pg_preview.idle_connections(
        database,
        idle_seconds=params.get("idle_seconds", 0),
        state=params.get("state", "any"),
        application_name=params.get("application_name", ""),
        user=params.get("user", ""),
    )
    rows = [
        {
            "pid": r["pid"],
            "user": r["user"],
            "application": r["application"],
            "state": r["state"],
            "idle_seconds": round(r["idle_seconds"], 1),
            "client": r["client"],
        }
        for r in found.rows
    ]
    listed = len(found.rows)
    summary = f"{found.total} connections of {database.name} would be terminated"
    if found.total > listed:
        summary += f" (the {listed} idle longest are the ones ended; {found.total - listed} not)"
    return {
        "summary": summary + ".",
        "columns": ["pid", "user", "application", "state", "idle_seconds", "client"],
        "rows": rows,
        "total": found.total,
        "seen": [r["key"] for r in found.rows if r["key"]],
        "access": found.access.sentence,
    }


def _statements(target, params: dict) -> dict:
    database = target.specific()
    pids, min_seconds = params.get("pids") or [], params.get("min_seconds")
    if not pids and min_seconds is None:
        raise InvalidTarget(
            "Name the queries to stop (pids) or a threshold (min_seconds): stopping every "
            "query of a database is never what the runbook means."
        )
    found = pg_preview.statements_to_signal(
        database, pids=pids, min_seconds=None if pids else min_seconds
    )
    rows = [
        {
            "pid": r["pid"],
            "user": r["user"],
            "application": r["application"],
            "state": r["state"],
            "seconds": round(r["seconds"], 1) if r["seconds"] is not None else None,
            "query": r["query"],
        }
        for r in found.rows
    ]
    missing = sorted(set(pids) - {r["pid"] for r in found.rows})
    summary = f"{found.total} statements on {database.name} would be stopped"
    if missing:
        summary += f"; no backend of this database has pid {', '.join(map(str, missing))}"
    return {
        "summary": summary + ".",
        "columns": ["pid", "user", "application", "state", "seconds", "query"],
        "rows": rows,
        "total": found.total,
        "seen": [r["key"] for r in found.rows if r["key"]],
        "access": found.access.sentence,
    }


def _cache_keys(target, params: dict) -> dict:
    cache = target.specific()
    pattern = params.get("pattern", "")
    counted = redis_cache.cache_count_matching(
        cache, pattern=pattern, max_seconds=CACHE_COUNT_SECONDS
    )
    where = f"db {cache.db} of {cache.name} ({counted.keys_in_database} keys)"
    if not pattern:
        summary = f"Every key of {where} would be removed: {counted.matched} keys."
    elif counted.complete:
        summary = f"{counted.matched} keys match {pattern!r} in {where} and would be removed."
    else:
        summary = (
            f"At least {counted.matched} keys match {pattern!r} in {where}, about "
            f"{counted.estimate} in all (counting stopped after {counted.scanned} keys, "
            f"{CACHE_COUNT_SECONDS:g} s); every matching key is removed."
        )
    return {
        "summary": summary,
        "columns": ["example"],
        "rows": [{"example": key} for key in counted.examples],
        "total": counted.matched,
        "count": counted.matched,
        "estimate": counted.estimate,
        "complete": counted.complete,
        "pattern": pattern,
    }


_CONTAINER_COLUMNS = ["name", "id", "state", "health", "restart_count", "started_at", "image"]


def _containers(target, params: dict) -> dict:
    engine, name = resolve_container(target, params)
    rows = docker_engine.containers_touched(engine, name)
    row = rows[0]
    return {
        "summary": f"Container {row['name']} ({row['id']}) on {engine.name} is {row['state']}"
        + (f" ({row['health']})" if row.get("health") else "")
        + " now.",
        "columns": _CONTAINER_COLUMNS,
        "rows": rows,
        "total": len(rows),
        "containers": {r["name"]: {"id": r["id"], "state": r["state"]} for r in rows},
    }


def _scale(target, params: dict) -> dict:
    replicas = params.get("replicas")
    if params.get("swarm_service"):
        engine = resolve_engine(target)
        found = docker_engine.swarm_service_replicas(engine, params["swarm_service"])
        return {
            "summary": f"Swarm service {found['service']} on {engine.name} asks for "
            f"{found['replicas']} replicas now; it would ask for {replicas}.",
            "columns": ["service", "replicas"],
            "rows": [found],
            "total": 1,
            "replicas_before": found["replicas"],
        }
    engine, name = resolve_container(target, params)
    rows = docker_engine.containers_touched(engine, name, whole_service=True)
    now = len(rows)
    change = (
        f"{replicas - now} would be created"
        if replicas > now
        else f"{', '.join(r['name'] for r in rows[replicas:][::-1])} would be stopped and removed"
        if replicas < now
        else "nothing would change"
    )
    return {
        "summary": f"{rows[0].get('compose_service') or name} on {engine.name} has {now} "
        f"replicas now; scaling to {replicas}: {change}.",
        "columns": _CONTAINER_COLUMNS,
        "rows": rows,
        "total": now,
        "replicas_before": now,
        "containers": {r["name"]: {"id": r["id"], "state": r["state"]} for r in rows},
    }


PREVIEWERS: dict[str, Callable[..., dict]] = {
    "db_terminate_idle": _connections,
    "db_cancel_queries": _statements,
    "db_terminate_queries": _statements,
    "cache_clear": _cache_keys,
    "container_restart": _containers,
    "container_stop": _containers,
    "container_start": _containers,
    "container_update_limits": _containers,
    "container_isolate": _containers,
    "service_scale": _scale,
}


def operation_preview(*, kind: str, target, params: dict) -> dict | None:
    """What `kind` with these (cleaned) parameters would do to `target` now, read live; None
    for a kind that changes nothing. A preview that could not be read has `failed` (why)."""
    spec = KINDS.get(kind)
    if spec is None or not spec.changing:
        return None
    preview = {
        "kind": kind,
        "target_id": target.pk,
        "target": str(target),
        "params": _bound_params(params),
        "taken_at": timezone.now().isoformat(),
        "failed": "",
    }
    started = time.monotonic()
    try:
        preview.update(PREVIEWERS[kind](target, params))
    except (AdapterError, InvalidTarget) as exc:
        preview["failed"] = str(exc)
    except Exception as exc:
        logger.exception("Preview of %s on %s failed unexpectedly", kind, target)
        preview["failed"] = f"Unexpected error ({type(exc).__name__}): {str(exc)[:300]}"
    preview["seconds"] = round(time.monotonic() - started, 3)
    # Shown on the page and stored on the operation: credentials in a query are masked.
    columns = preview.get("columns", [])
    preview["rows"] = mask_structure(
        [{c: row.get(c) for c in columns} for row in preview.get("rows", [])[:PREVIEW_SHOWN_ROWS]]
    )
    # An adapter's error may quote a connection string or a statement.
    preview["failed"] = mask_credentials(preview["failed"])
    return preview


def preview_token(*, preview: dict, actor) -> str:
    """The preview, signed for this person, to carry through the confirmation form."""
    return signing.dumps({"preview": preview, "user": actor.pk}, salt=_SALT, compress=True)


def preview_from_token(*, token: str, actor) -> dict | None:
    """The preview this person was shown, or None (no token, tampered, someone else's, or
    older than PREVIEW_MAX_AGE_SECONDS)."""
    if not token or len(token) > 500_000:
        return None
    try:
        payload = signing.loads(token, salt=_SALT, max_age=PREVIEW_MAX_AGE_SECONDS)
    except (signing.BadSignature, ValueError):
        return None
    if not isinstance(payload, dict) or payload.get("user") != getattr(actor, "pk", None):
        return None
    return payload.get("preview")


def preview_matches(*, preview: dict | None, kind: str, target, params: dict) -> bool:
    """Whether `preview` was read for this kind, system and parameters."""
    return bool(
        preview
        and preview.get("kind") == kind
        and preview.get("target_id") == target.pk
        and preview.get("params") == _bound_params(params)
    )


def preview_failed_reason_message(preview: dict) -> str:
    return (
        f"The preview failed ({preview['failed']}), so nobody has seen what this will do: "
        "give a reason to run it anyway."
    )


@dataclass(frozen=True)
class Confirmation:
    """What a confirmation page shows (`preview`, carried on as `token`, with `note` saying
    why it is shown again) and, once the person confirmed a preview still valid for what
    they submit, `confirmed`: the preview to act on."""

    preview: dict | None
    token: str
    note: str = ""
    confirmed: dict | None = None

    @property
    def context(self) -> dict:
        return {"preview": self.preview, "preview_token": self.token, "preview_note": self.note}


def confirmation_preview(
    *, token: str, actor, kind: str, target, params: dict, submitted: bool
) -> Confirmation:
    """For a page that confirms `kind` on `target`: the preview the person confirmed when
    they `submitted` it and it still fits, else a fresh one to show (and confirm) first."""
    shown = preview_from_token(token=token, actor=actor)
    if submitted and preview_matches(preview=shown, kind=kind, target=target, params=params):
        return Confirmation(shown, token, confirmed=shown)
    fresh = operation_preview(kind=kind, target=target, params=params)
    if fresh is None:
        return Confirmation(None, "")
    note = ""
    if submitted:
        note = (
            "The preview you saw was for another system or other parameters, or is older "
            f"than {PREVIEW_MAX_AGE_SECONDS // 60} minutes: this is what it does now. Check it "
            "and confirm again."
            if shown
            else "This is what it does now: check it and confirm again."
        )
    return Confirmation(fresh, preview_token(preview=fresh, actor=actor), note)
