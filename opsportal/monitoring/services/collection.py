"""Collection rounds: lease the systems that are due, sample them, store what they answered,
and hand what was collected to the alert rules.

Two ways to run a round, one code path for the collecting itself:
- `collection_dispatch_due` (the beat task `monitoring.collect`): leases the due systems and,
  after the leases are committed, sends `monitoring.collect_systems` tasks to the `collect`
  queue, so every worker process on every host takes a share: a share per Docker engine and
  per system that is new, failed or was slow last time; systems that answered within
  QUICK_MS last time go SHARE_SIZE to a share (collected concurrently), as a task's fixed
  cost is larger than their collection. The lease is the
  row (CONVENTIONS "record intent, then act"): the task takes it over with a compare-and-set
  on the lease's expiry, so a message delivered twice collects once; a message the broker
  lost leaves a lease that lapses after LEASE_SECONDS, and the system is due again.
- `collection_run_due`: the same round in one process (a thread per system), for a manage.py
  shell, the tests and the benchmark's in-process figure.

Everything derived from a collection is per system, so each share does it for its own
systems: the windowed figures (API p50/p95 and error rate, restarts in 5 min) read that
system's stored samples; the alert rules step only that system's series; undelivered alerts
of that system are sent again. Portal-level figures (the backup storage's free space), stale
series and undelivered alerts of systems nobody is collecting are the dispatching task's.
`collection_finished` is sent once a round's last share is stored (its `round` is that
share), so the status page is refreshed once per round, not once per system."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Min, Q
from django.utils import timezone

from opsportal.monitoring import collectors
from opsportal.monitoring.collectors import Previous, Reading
from opsportal.monitoring.models import AlertState, CollectionSchedule, LatestValue
from opsportal.monitoring.services.alerts import alerts_evaluate
from opsportal.monitoring.services.derived import _derived_values
from opsportal.monitoring.services.samples import SeriesValues, samples_store, series_prune_stale
from opsportal.monitoring.signals import collection_finished
from opsportal.queueing import enqueue_after_commit
from opsportal.systems.adapters.errors import AdapterError
from opsportal.systems.models import SPECIFIC_RELATIONS, System, SystemKind
from opsportal.systems.services import docker_engines_duplicates

if TYPE_CHECKING:
    from celery import Task

logger = logging.getLogger(__name__)

# A collection that has not finished after this long is presumed dead (worker killed); its
# lease lapses and the next round may collect the system again.
LEASE_SECONDS = 120
# Backup locations are portal-level: sampled at the default interval, whatever the round.
BACKUP_LOCATIONS_KEY = LatestValue.key_for(None, "disk_used_percent", "")
# Counters a collector turns into rates against the previous sample.
_RATE_INPUTS = (
    "container_cpu_usage_seconds",
    "container_restart_count",
    "redis_keyspace_hits",
    "redis_keyspace_misses",
)

# (system id or None, metric, subject) -> (value, at)


@dataclass
class SystemCollection:
    system: System
    ok: bool
    error: str
    duration_ms: float
    at: dt.datetime
    readings: list[Reading] = field(default_factory=list)


@dataclass
class CollectionRound:
    collected: list[SystemCollection]
    samples: int
    transitions: list[tuple[AlertState, str]]
    duration_ms: float


def collection_schedules_ensure() -> None:
    """Every registered system gets a schedule at the default interval."""
    missing = System.objects.filter(collection__isnull=True).values_list("pk", flat=True)
    CollectionSchedule.objects.bulk_create(
        [CollectionSchedule(system_id=pk) for pk in missing], ignore_conflicts=True
    )


def _lease_due(*, now: dt.datetime) -> list[int]:
    """Take the lease of every enabled system whose interval has elapsed and whose previous
    collection has finished (or died); the slowest systems of the previous round first, so
    a round spread over several workers is not left waiting for a slow one started last."""
    with transaction.atomic():
        due = (
            CollectionSchedule.objects.select_for_update(skip_locked=True)
            .filter(enabled=True)
            # A second of slack so a 30 s interval on a 10 s tick is not pushed to 40 s.
            .filter(Q(next_due_at__isnull=True) | Q(next_due_at__lte=now + dt.timedelta(seconds=1)))
            .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
            .order_by(F("last_duration_ms").desc(nulls_first=True), "pk")
        )
        ids = list(due.values_list("pk", flat=True))
        CollectionSchedule.objects.filter(pk__in=ids).update(
            lease_until=lease_expiry(now), last_started_at=now
        )
    return ids


def lease_expiry(leased_at: dt.datetime) -> dt.datetime:
    return leased_at + dt.timedelta(seconds=LEASE_SECONDS)


def _specific(ids: list[int]) -> list[System]:
    systems = System.objects.filter(pk__in=ids).select_related(*SPECIFIC_RELATIONS)
    order = {pk: n for n, pk in enumerate(ids)}
    return sorted((s.specific() for s in systems), key=lambda s: order[s.pk])


def collection_claim_due(*, now: dt.datetime) -> list[System]:
    """Lease the due systems (see `_lease_due`) and return them, to collect in this process."""
    return _specific(_lease_due(now=now))


def _collect_one(system: System, previous: Previous, duplicate: bool = False) -> SystemCollection:
    started = time.perf_counter()
    now = timezone.now()
    # A second registration of a Docker engine: its containers are collected through the
    # first one, so one crash loop opens one incident, not two.
    collect = (
        collectors.collect_engine_reachable if duplicate else collectors.COLLECTORS[system.kind]
    )
    try:
        readings = collect(system, previous, now)
        ok, error = True, ""
    except AdapterError as exc:
        readings, ok, error = [], False, exc.message
    except Exception as exc:  # a collector bug must not stop the other systems' collection
        logger.exception("Collecting from %s failed", system.name)
        readings, ok, error = [], False, f"Collector error: {type(exc).__name__}: {exc}"[:500]
    duration_ms = (time.perf_counter() - started) * 1000
    # The failure is itself a sample: up=0 is what the "not answering" rules watch.
    readings += [
        Reading("up", 1.0 if ok else 0.0),
        Reading("collection_duration_ms", round(duration_ms, 2)),
    ]
    # Samples carry the portal's clock, not the system's, so a system whose clock is
    # skewed cannot reorder its series or confuse the rules' for-durations.
    return SystemCollection(system, ok, error, duration_ms, timezone.now(), readings)


def _previous_counters(system_ids: list[int]) -> dict[int, Previous]:
    previous: dict[int, Previous] = defaultdict(dict)
    rows = LatestValue.objects.filter(system_id__in=system_ids, metric__in=_RATE_INPUTS)
    for system_id, metric, subject, value, at in rows.values_list(
        "system_id", "metric", "subject", "value", "at"
    ):
        previous[system_id][(metric, subject)] = (value, at)
    return previous


def collection_run_due(*, now: dt.datetime | None = None, max_workers: int = 16) -> CollectionRound:
    """One collection round in this process: sample every due system concurrently, store
    the samples, derive windowed figures, and evaluate the alert rules on what was
    collected."""
    started = time.perf_counter()
    now = now or timezone.now()
    collection_schedules_ensure()
    systems = collection_claim_due(now=now)
    portal = _portal_values(now)
    result = _collect_and_store(systems, portal=portal, max_workers=max_workers)
    with transaction.atomic():
        if result.samples:
            series_prune_stale(now=now)
    result.duration_ms = (time.perf_counter() - started) * 1000
    collection_finished.send(sender=CollectionRound, round=result)
    return result


@dataclass
class CollectionDispatch:
    leased: list[int]
    portal_samples: int
    transitions: list[tuple[AlertState, str]]


def collection_dispatch_due(
    *, now: dt.datetime | None = None, task: Task | None = None
) -> CollectionDispatch:
    """Lease every due system and send its collection to the `collect` queue once the
    leases are committed (a share per system; systems that answered quickly last time a few
    to a share); store and evaluate the portal-level figures."""
    if task is None:
        from opsportal.monitoring.tasks import collect_systems as task
    now = now or timezone.now()
    collection_schedules_ensure()
    with transaction.atomic():
        ids = _lease_due(now=now)
        for share in _shares(ids):
            enqueue_after_commit(task, share, now.isoformat())
    values = _portal_values(now)
    with transaction.atomic():
        samples_store(values=values)
        series_prune_stale(now=now)
    # Undelivered alerts of systems under a lease are that share's to send again; here the
    # portal's own and those of systems nobody is collecting (disabled, or not answering
    # for longer than a lease).
    leased = CollectionSchedule.objects.filter(lease_until__gte=now).values_list(
        "system_id", flat=True
    )
    transitions = alerts_evaluate(
        values=values,
        systems={},
        redeliver=~Q(system_id__in=leased) | Q(system__isnull=True),
    )
    return CollectionDispatch(ids, len(values), transitions)


# A share is one system, or up to this many quick ones collected together (each share has a
# fixed cost: its task, its queries, the rules loaded once).
SHARE_SIZE = 4
# Quick: the previous collection answered within this, so it is not expected to hold its
# share-mates up for long. A Docker engine, a system seen for the first time, one that
# failed or was slow has a share of its own.
QUICK_MS = 500


def _shares(ids: list[int]) -> list[list[int]]:
    rows = CollectionSchedule.objects.filter(pk__in=ids).values_list(
        "pk", "system__kind", "last_ok", "last_duration_ms"
    )
    quick = {
        pk
        for pk, kind, ok, ms in rows
        if kind != SystemKind.DOCKER and ok and ms is not None and ms < QUICK_MS
    }
    shares = [[pk] for pk in ids if pk not in quick]
    together = [pk for pk in ids if pk in quick]
    shares += [together[i : i + SHARE_SIZE] for i in range(0, len(together), SHARE_SIZE)]
    return shares


def collection_run_leased(
    *, system_ids: list[int], leased_at: dt.datetime, max_workers: int = 16
) -> CollectionRound:
    """A share of a dispatched round: collect the systems whose lease that dispatch took.

    The lease is taken over with a compare-and-set on its expiry, so a message delivered
    twice (a worker lost its connection to the broker) collects a system once; a share that
    comes after its lease lapsed finds the system leased again, or due again, and skips it
    (the later round collects it)."""
    started = time.perf_counter()
    now = timezone.now()
    taken = []
    with transaction.atomic():
        _commit_without_waiting_for_disk()
        for pk in system_ids:
            if CollectionSchedule.objects.filter(
                pk=pk, lease_until=lease_expiry(leased_at), lease_until__gt=now
            ).update(lease_until=lease_expiry(now) + dt.timedelta(microseconds=1)):
                taken.append(pk)
    result = _collect_and_store(
        _specific(taken),
        portal={},
        max_workers=max_workers,
        redeliver=Q(system_id__in=taken),
    )
    result.duration_ms = (time.perf_counter() - started) * 1000
    if (
        taken
        and not CollectionSchedule.objects.filter(
            last_started_at=leased_at, lease_until__isnull=False
        ).exists()
    ):
        # The round's last share: every system it leased is stored. (Two last shares that
        # finish together both send; a round with a lost share sends nothing, and the status
        # page's own schedule refreshes it.)
        collection_finished.send(sender=CollectionRound, round=result)
    return result


def _portal_values(now: dt.datetime) -> SeriesValues:
    values: SeriesValues = {}
    if _backup_locations_due(now):
        at = timezone.now()
        for r in collectors.collect_backup_locations():
            values[(None, r.metric, r.subject)] = (float(r.value), at)
    return values


def _collect_and_store(
    systems: list[System],
    *,
    portal: SeriesValues,
    max_workers: int,
    redeliver: Q | None = None,
) -> CollectionRound:
    started = time.perf_counter()
    previous = _previous_counters([s.pk for s in systems])
    duplicates = docker_engines_duplicates(
        engines=[s for s in systems if s.kind == SystemKind.DOCKER]
    )
    collected: list[SystemCollection] = []
    if len(systems) == 1:  # a share of one system: no thread needed
        (system,) = systems
        collected = [_collect_one(system, previous.get(system.pk, {}), system.pk in duplicates)]
    elif systems:
        with ThreadPoolExecutor(
            max_workers=min(max_workers, len(systems)), thread_name_prefix="monitoring"
        ) as pool:
            collected = list(
                pool.map(
                    lambda s: _collect_one(s, previous.get(s.pk, {}), s.pk in duplicates),
                    systems,
                )
            )
    values: SeriesValues = dict(portal)
    for item in collected:
        for r in item.readings:
            values[(item.system.pk, r.metric, r.subject)] = (float(r.value), item.at)
    with transaction.atomic():
        _commit_without_waiting_for_disk()
        samples_store(values=values)
        derived = _derived_values(collected)
        samples_store(values=derived)
        values.update(derived)
        _schedules_finish(collected)
    transitions = alerts_evaluate(
        values=values,
        systems={item.system.pk: item.system for item in collected},
        failed={item.system.pk for item in collected if not item.ok},
        redeliver=redeliver,
    )
    return CollectionRound(
        collected, len(values), transitions, (time.perf_counter() - started) * 1000
    )


def _commit_without_waiting_for_disk() -> None:
    """The current transaction commits without waiting for its WAL to reach the disk
    (PostgreSQL's asynchronous commit; the WAL writer flushes within 3 x wal_writer_delay,
    0.6 s by default). A share's samples and schedule changes are what this applies to: a
    database crash loses at most that last moment of them (the leases lapse and the systems
    are collected again), never consistency. A flush per commit was ~80 disk syncs a round
    over the fleet benchmark, paid by the workers' waiting and the kernel's journal.
    Alert transitions, incidents and notifications commit in their own transactions, durably."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")


def _backup_locations_due(now: dt.datetime) -> bool:
    newest = LatestValue.objects.filter(system=None, metric="disk_used_percent").aggregate(
        at=Min("at")
    )["at"]
    interval = settings.MONITORING_DEFAULT_INTERVAL_SECONDS
    return newest is None or (now - newest).total_seconds() >= interval - 1


def _schedules_finish(collected: list[SystemCollection]) -> None:
    schedules = CollectionSchedule.objects.in_bulk([c.system.pk for c in collected])
    for item in collected:
        schedule = schedules[item.system.pk]
        schedule.lease_until = None
        schedule.last_finished_at = item.at
        schedule.last_ok = item.ok
        schedule.last_error = item.error[:500]
        schedule.last_duration_ms = round(item.duration_ms, 1)
        # Due again one interval after this run started; a late run does not shift the
        # schedule by its own lateness more than once.
        schedule.next_due_at = max(
            schedule.last_started_at + dt.timedelta(seconds=schedule.interval_seconds), item.at
        )
    CollectionSchedule.objects.bulk_update(
        schedules.values(),
        [
            "lease_until",
            "last_finished_at",
            "last_ok",
            "last_error",
            "last_duration_ms",
            "next_due_at",
        ],
    )
