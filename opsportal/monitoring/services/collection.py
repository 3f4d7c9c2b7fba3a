"""Collection rounds: lease the systems that are due, sample them concurrently, store
what they answered, and hand the round to the alert rules."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.db.models import Min, Q
from django.utils import timezone

from opsportal.monitoring import collectors
from opsportal.monitoring.collectors import Previous, Reading
from opsportal.monitoring.models import AlertState, CollectionSchedule, LatestValue
from opsportal.monitoring.services.alerts import alerts_evaluate
from opsportal.monitoring.services.derived import _derived_values
from opsportal.monitoring.services.samples import SeriesValues, samples_store, series_prune_stale
from opsportal.monitoring.signals import collection_finished
from opsportal.systems.adapters.errors import AdapterError
from opsportal.systems.models import SPECIFIC_RELATIONS, System, SystemKind
from opsportal.systems.services import docker_engines_duplicates

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


def collection_claim_due(*, now: dt.datetime) -> list[System]:
    """Take the lease of every enabled system whose interval has elapsed and whose previous
    collection has finished (or died)."""
    with transaction.atomic():
        due = (
            CollectionSchedule.objects.select_for_update(skip_locked=True)
            .filter(enabled=True)
            # A second of slack so a 30 s interval on a 10 s tick is not pushed to 40 s.
            .filter(Q(next_due_at__isnull=True) | Q(next_due_at__lte=now + dt.timedelta(seconds=1)))
            .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        )
        ids = list(due.values_list("pk", flat=True))
        CollectionSchedule.objects.filter(pk__in=ids).update(
            lease_until=now + dt.timedelta(seconds=LEASE_SECONDS), last_started_at=now
        )
    systems = System.objects.filter(pk__in=ids).select_related(*SPECIFIC_RELATIONS)
    return [s.specific() for s in systems]


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
    """One collection round: sample every due system concurrently, store the samples,
    derive windowed figures, and evaluate the alert rules on what was collected."""
    started = time.perf_counter()
    now = now or timezone.now()
    collection_schedules_ensure()
    systems = collection_claim_due(now=now)
    previous = _previous_counters([s.pk for s in systems])
    duplicates = docker_engines_duplicates(
        engines=[s for s in systems if s.kind == SystemKind.DOCKER]
    )
    collected: list[SystemCollection] = []
    if systems:
        with ThreadPoolExecutor(
            max_workers=min(max_workers, len(systems)), thread_name_prefix="monitoring"
        ) as pool:
            collected = list(
                pool.map(
                    lambda s: _collect_one(s, previous.get(s.pk, {}), s.pk in duplicates),
                    systems,
                )
            )
    values: SeriesValues = {}
    for item in collected:
        for r in item.readings:
            values[(item.system.pk, r.metric, r.subject)] = (float(r.value), item.at)
    if _backup_locations_due(now):
        at = timezone.now()
        for r in collectors.collect_backup_locations():
            values[(None, r.metric, r.subject)] = (float(r.value), at)
    with transaction.atomic():
        samples_store(values=values)
        derived = _derived_values(collected)
        samples_store(values=derived)
        values.update(derived)
        _schedules_finish(collected)
        if values:
            series_prune_stale(now=now)
    transitions = alerts_evaluate(
        values=values,
        systems={item.system.pk: item.system for item in collected},
        failed={item.system.pk for item in collected if not item.ok},
    )
    result = CollectionRound(
        collected, len(values), transitions, (time.perf_counter() - started) * 1000
    )
    collection_finished.send(sender=CollectionRound, round=result)
    return result


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
