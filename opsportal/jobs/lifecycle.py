"""The mechanics every row-first job shares (CONVENTIONS.md, "Background operations").

A job is a row first and a task second: the service writes the row queued and enqueues the
task after commit (`opsportal.queueing.enqueue_after_commit`); the worker claims the row
with one atomic compare-and-set (`job_claim`), beats while it works when the work is long
(`job_heartbeat`), and records the outcome only if the row is still where it left it
(`job_finish`); a periodic sweeper (`job_sweep`) re-dispatches rows the broker lost and
fails rows a dead worker left. Each kind of job keeps its own states, messages and rules
(one backup per database at a time, "waiting" checklist steps, notification backoff) and
describes itself to the sweeper with a `JobSpec`.

The shared columns are declared once in `opsportal.jobs.models.JobFields`, which operations,
backups, restores and drills inherit; the other kinds' columns are named differently (a
security scan's status is `scan_status`, a checklist step is queued at `queued_at`, a
notification retries at `next_attempt_at`) and renaming them would change the schema, so
the functions take the column names (defaulting to JobFields') instead of requiring the
base model.
Sentry's scheduled deletions share one claim and one re-attempt function across models the
same way.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db.models import F, Model, Q
from django.utils import timezone

Status = str
Statuses = Status | Iterable[Status]


def _status_filter(status_field: str, statuses: Statuses) -> dict[str, Any]:
    if isinstance(statuses, str):
        return {status_field: statuses}
    return {f"{status_field}__in": list(statuses)}


def job_claim(
    model: type[Model],
    pk: int,
    *,
    from_status: Statuses,
    to_status: Status,
    status_field: str = "status",
    when: Q | None = None,
    **extra: Any,
) -> bool:
    """Move row `pk` from `from_status` (one status or several) to `to_status`, setting the
    `extra` columns, in one UPDATE … WHERE status = from_status. True if this caller moved
    it; False if the row was elsewhere (another worker claimed it, it was cancelled or it
    already ran), so a redelivered message does no harm.

    `when` narrows the claim further (a notification is claimed only once its retry is
    due). A database constraint the update violates (one backup per database at a time)
    raises IntegrityError to the caller, whose rule it is."""
    rows = model._default_manager.filter(pk=pk, **_status_filter(status_field, from_status))
    if when is not None:
        rows = rows.filter(when)
    return bool(rows.update(**{status_field: to_status}, **extra))


def job_heartbeat(
    model: type[Model],
    pk: int,
    *,
    running_status: Status,
    status_field: str = "status",
    heartbeat_field: str = "heartbeat_at",
    now: dt.datetime | None = None,
) -> bool:
    """Mark the running row alive, so the sweeper can tell a dead worker from slow work.
    False once the row is no longer running (finished, or failed by the sweeper)."""
    return job_claim(
        model,
        pk,
        from_status=running_status,
        to_status=running_status,
        status_field=status_field,
        **{heartbeat_field: now or timezone.now()},
    )


def job_finish(
    model: type[Model],
    pk: int,
    *,
    from_status: Statuses,
    to_status: Status,
    status_field: str = "status",
    finished_field: str | None = "finished_at",
    now: dt.datetime | None = None,
    **fields: Any,
) -> bool:
    """Record the outcome of row `pk` only if it is still in `from_status`: whoever ends a
    job first (the worker, a cancel, the sweeper) wins, the others change nothing.
    `finished_field` (None for a model without one) is set to `now`."""
    if finished_field is not None:
        fields[finished_field] = now or timezone.now()
    return job_claim(
        model,
        pk,
        from_status=from_status,
        to_status=to_status,
        status_field=status_field,
        **fields,
    )


@dataclass(frozen=True)
class JobSpec:
    """How one kind of job looks to the sweeper.

    Lost work: rows in `queued` whose `queued_field` (when it was last sent to the broker)
    is older than `lost_after` are dispatched again with `dispatch(row)`. A kind with its
    own retry schedule (notifications' backoff) names the column holding when a row is next
    due in `retry_at_field`: such a row is dispatched once that time has come, and only a
    row without one is judged lost by its age. With
    `dispatch_count_field`, each re-dispatch is itself a compare-and-set on `queued_field`
    (two sweepers never both send it) and counts. With `give_up`, a lost row whose
    `give_up_field` is older than `give_up_after` is not sent again but ended by
    `give_up(row, now)` (True if it ended it).

    Dead workers: rows in `running` past their time limit (`time_limit`: a fixed timedelta
    compared in the database, or a function of the row compared here, both measured from
    `started_field`) or whose `heartbeat_field` is older than `heartbeat_stale()` are
    handed to `fail(row, now)`, which records the kind's own message and returns True if it
    failed the row (False when the worker finished meanwhile). A kind whose `fail` puts the
    row back in the queue instead (a notification is retried) sets `fail_dead_first`, so
    the same sweep dispatches it again."""

    model: type[Model]
    queued: Status
    running: Status
    dispatch: Callable[[Any], None]
    fail: Callable[[Any, dt.datetime], bool]
    lost_after: dt.timedelta
    status_field: str = "status"
    queued_field: str = "requested_at"
    # "lt" or "lte": each kind keeps the boundary it always had.
    lost_lookup: str = "lt"
    retry_at_field: str | None = None
    dispatch_count_field: str | None = None
    give_up: Callable[[Any, dt.datetime], bool] | None = None
    give_up_after: dt.timedelta = dt.timedelta(0)
    give_up_field: str = "requested_at"
    # The order lost rows are sent again in.
    order_by: str | None = None
    started_field: str = "started_at"
    time_limit: dt.timedelta | Callable[[Any], dt.timedelta] | None = None
    # True: a row exactly at its limit is failed too; False: only one past it. Each kind
    # keeps the boundary it always had.
    fail_at_limit: bool = False
    heartbeat_field: str | None = None
    heartbeat_stale: Callable[[], dt.timedelta] | None = None
    select_related: tuple[str, ...] = field(default_factory=tuple)
    # Bound one sweep's work on lost and on running rows; the next sweep continues.
    batch: int | None = None
    running_batch: int | None = None
    fail_dead_first: bool = False


def _rows(
    spec: JobSpec, status: Status, order_by: str | None, limit: int | None, *when: Q, **lookups
):
    rows = spec.model._default_manager.filter(*when, **{spec.status_field: status}, **lookups)
    if spec.select_related:
        rows = rows.select_related(*spec.select_related)
    if order_by:
        rows = rows.order_by(order_by)
    return rows[:limit] if limit else rows


def job_redispatch_lost(spec: JobSpec, *, now: dt.datetime) -> dict[str, int]:
    """Send again the queued rows the broker lost (and give up on the ones queued too long).
    Returns {"redispatched": n, "given_up": m}."""
    counts = {"redispatched": 0, "given_up": 0}
    aged = Q(**{f"{spec.queued_field}__{spec.lost_lookup}": now - spec.lost_after})
    if spec.retry_at_field is not None:
        aged = Q(**{f"{spec.retry_at_field}__lte": now}) | (
            Q(**{f"{spec.retry_at_field}__isnull": True}) & aged
        )
    lost = _rows(spec, spec.queued, spec.order_by, spec.batch, aged)
    for row in lost:
        if spec.give_up is not None and getattr(row, spec.give_up_field) < now - spec.give_up_after:
            counts["given_up"] += bool(spec.give_up(row, now))
            continue
        if spec.dispatch_count_field is not None:
            # Only the sweeper that moves the dispatch time sends the message.
            if not job_claim(
                spec.model,
                row.pk,
                from_status=spec.queued,
                to_status=spec.queued,
                status_field=spec.status_field,
                when=Q(**{spec.queued_field: getattr(row, spec.queued_field)}),
                **{
                    spec.queued_field: now,
                    spec.dispatch_count_field: F(spec.dispatch_count_field) + 1,
                },
            ):
                continue
            setattr(row, spec.queued_field, now)
        spec.dispatch(row)
        counts["redispatched"] += 1
    return counts


def job_fail_dead(spec: JobSpec, *, now: dt.datetime) -> int:
    """Fail the running rows whose worker died: past the time limit, or silent for longer
    than the heartbeat allows. Returns how many were failed."""
    failed = 0
    if spec.heartbeat_field is not None and spec.heartbeat_stale is not None:
        stale = {f"{spec.heartbeat_field}__lt": now - spec.heartbeat_stale()}
        for row in _rows(spec, spec.running, None, spec.running_batch, **stale):
            failed += bool(spec.fail(row, now))
    if isinstance(spec.time_limit, dt.timedelta):
        lookup = "lte" if spec.fail_at_limit else "lt"
        past = {f"{spec.started_field}__{lookup}": now - spec.time_limit}
        for row in _rows(spec, spec.running, None, spec.running_batch, **past):
            failed += bool(spec.fail(row, now))
    elif spec.time_limit is not None:
        started = {f"{spec.started_field}__isnull": False}
        for row in _rows(spec, spec.running, spec.started_field, spec.running_batch, **started):
            elapsed, limit = now - getattr(row, spec.started_field), spec.time_limit(row)
            if elapsed > limit or (spec.fail_at_limit and elapsed == limit):
                failed += bool(spec.fail(row, now))
    return failed


def job_sweep(spec: JobSpec, *, now: dt.datetime | None = None) -> dict[str, int]:
    """Re-dispatch what the broker lost and fail what a dead worker left, for one kind of
    job. Returns {"redispatched": n, "given_up": m, "failed": k}."""
    now = now or timezone.now()
    if spec.fail_dead_first:
        failed = job_fail_dead(spec, now=now)
        counts = job_redispatch_lost(spec, now=now)
    else:
        counts = job_redispatch_lost(spec, now=now)
        failed = job_fail_dead(spec, now=now)
    counts["failed"] = failed
    return counts
