"""Collecting the key metrics, storing samples, evaluating alert rules, and retention."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import math
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.db.models import Min, Q
from django.utils import timezone

from opsportal.audit.models import AuditAction, AuditOutcome
from opsportal.audit.services import audit_record
from opsportal.monitoring import collectors
from opsportal.monitoring.catalogue import METRICS
from opsportal.monitoring.collectors import Previous, Reading
from opsportal.monitoring.handoff import alert_hand_off
from opsportal.monitoring.models import (
    COMPARE,
    AlertRule,
    AlertState,
    AlertStatus,
    CollectionSchedule,
    LatestValue,
    Sample,
    SampleRollup,
)
from opsportal.monitoring.signals import collection_finished
from opsportal.schedules import periodic_task_ensure
from opsportal.systems.adapters.errors import AdapterError
from opsportal.systems.models import SPECIFIC_RELATIONS, System, SystemKind
from opsportal.systems.services import docker_engines_duplicates

logger = logging.getLogger(__name__)

# A collection that has not finished after this long is presumed dead (worker killed); its
# lease lapses and the next round may collect the system again.
LEASE_SECONDS = 120
# Backup locations are portal-level: sampled at the default interval, whatever the round.
BACKUP_LOCATIONS_KEY = LatestValue.key_for(None, "disk_used_percent", "")
EVIDENCE_LIMIT = 20
# Counters a collector turns into rates against the previous sample.
_RATE_INPUTS = (
    "container_cpu_usage_seconds",
    "container_restart_count",
    "redis_keyspace_hits",
    "redis_keyspace_misses",
)

# (system id or None, metric, subject) -> (value, at)
SeriesValues = dict[tuple[int | None, str, str], tuple[float, dt.datetime]]


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


# --- collection ------------------------------------------------------------------------------


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


def samples_store(*, values: SeriesValues) -> int:
    """Append the samples and move each series' latest value forward."""
    if not values:
        return 0
    Sample.objects.bulk_create(
        [
            Sample(system_id=system_id, metric=metric, subject=subject, value=value, at=at)
            for (system_id, metric, subject), (value, at) in values.items()
        ],
        batch_size=2000,
    )
    LatestValue.objects.bulk_create(
        [
            LatestValue(
                key=LatestValue.key_for(system_id, metric, subject),
                system_id=system_id,
                metric=metric,
                subject=subject,
                value=value,
                at=at,
            )
            for (system_id, metric, subject), (value, at) in sorted(
                values.items(), key=lambda kv: (kv[0][0] or 0, kv[0][1], kv[0][2])
            )
        ],
        update_conflicts=True,
        unique_fields=["key"],
        update_fields=["value", "at"],
        batch_size=2000,
    )
    return len(values)


def series_prune_stale(*, now: dt.datetime | None = None) -> int:
    """Drop the newest value of every series not updated for MONITORING_STALE_SERIES_SECONDS
    (or three of its system's collection intervals, when that is longer): a removed
    container, an unmounted filesystem, a figure the system stopped reporting. /metrics and
    the overview read this table, so they stop showing a value that no longer exists; the
    samples themselves stay for their retention. (A deleted system's series go with it at
    once: the table's foreign key cascades in the same transaction.)"""
    now = now or timezone.now()
    age = settings.MONITORING_STALE_SERIES_SECONDS
    slow = dict(
        CollectionSchedule.objects.filter(interval_seconds__gt=age / 3).values_list(
            "system_id", "interval_seconds"
        )
    )
    pruned, _ = (
        LatestValue.objects.filter(at__lt=now - dt.timedelta(seconds=age))
        .exclude(system_id__in=list(slow))
        .delete()
    )
    for system_id, interval in slow.items():
        deleted, _ = LatestValue.objects.filter(
            system_id=system_id, at__lt=now - dt.timedelta(seconds=3 * interval)
        ).delete()
        pruned += deleted
    return pruned


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (what an operator can check by hand on the samples)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def _derived_values(collected: list[SystemCollection]) -> SeriesValues:
    """Figures over the rolling window, computed from the stored samples: API p50/p95 and
    error rate, and container restarts within the last five minutes."""
    derived: SeriesValues = {}
    at_of = {c.system.pk: c.at for c in collected if c.ok}
    window = dt.timedelta(seconds=settings.MONITORING_WINDOW_SECONDS)
    http_ids = [c.system.pk for c in collected if c.ok and c.system.kind == SystemKind.HTTP]
    if http_ids:
        latencies: dict[int, list[float]] = defaultdict(list)
        errors: dict[int, list[float]] = defaultdict(list)
        since = min(at_of[i] for i in http_ids) - window
        rows = Sample.objects.filter(
            system_id__in=http_ids, metric__in=("http_latency_ms", "http_error"), at__gt=since
        ).values_list("system_id", "metric", "value", "at")
        for system_id, metric, value, at in rows:
            if at <= at_of[system_id] - window:
                continue
            (latencies if metric == "http_latency_ms" else errors)[system_id].append(value)
        for system_id in http_ids:
            at = at_of[system_id]
            if latencies[system_id]:
                derived[(system_id, "http_latency_p50_ms", "")] = (
                    percentile(latencies[system_id], 0.50),
                    at,
                )
                derived[(system_id, "http_latency_p95_ms", "")] = (
                    percentile(latencies[system_id], 0.95),
                    at,
                )
            if errors[system_id]:
                rate = sum(errors[system_id]) / len(errors[system_id]) * 100
                derived[(system_id, "http_error_rate_percent", "")] = (round(rate, 3), at)
    docker_ids = [c.system.pk for c in collected if c.ok and c.system.kind == SystemKind.DOCKER]
    if docker_ids:
        since = min(at_of[i] for i in docker_ids) - collectors.RESTARTS_WINDOW
        oldest = {
            (row["system_id"], row["subject"]): row["lowest"]
            for row in Sample.objects.filter(
                system_id__in=docker_ids, metric="container_restart_count", at__gt=since
            )
            .values("system_id", "subject")
            .annotate(lowest=Min("value"))
        }
        for item in collected:
            if item.system.pk not in docker_ids:
                continue
            for r in item.readings:
                if r.metric == "container_restart_count":
                    # The lowest count sampled within the window, or the engine's own
                    # baseline (0 for a container created within it) when that is lower:
                    # restarts before monitoring's first sample are not lost. A manual
                    # restart resets the engine's count to 0, so the count alone would
                    # call a crash loop over the moment someone restarts it: the engine's
                    # start events within the window (window_count) still count those
                    # restarts. The larger figure wins, as the engine keeps only its last
                    # few hundred events.
                    lowest = oldest.get((item.system.pk, r.subject), r.value)
                    if r.baseline is not None:
                        lowest = min(lowest, r.baseline)
                    restarts = max(0.0, r.value - lowest, r.window_count or 0.0)
                    derived[(item.system.pk, "container_restarts_5m", r.subject)] = (
                        restarts,
                        item.at,
                    )
    return derived


# --- alert rules -----------------------------------------------------------------------------


def fingerprint_for(rule: AlertRule, system_id: int | None, subject: str) -> str:
    fingerprint = f"monitoring:rule-{rule.pk}:system-{system_id or 'portal'}:{subject}"
    if len(fingerprint) > 128:  # incidents keep 128 characters; a long path stays unique
        digest = hashlib.sha1(subject.encode(), usedforsecurity=False).hexdigest()[:16]
        fingerprint = fingerprint[:100] + "~" + digest
    return fingerprint


def alerts_evaluate(
    *,
    values: SeriesValues,
    systems: dict[int, System],
    failed: set[int] = frozenset(),
) -> list[tuple[AlertState, str]]:
    """Step every enabled rule on the series just collected; return (state, "firing" |
    "resolved") for each rule that changed, after handing the change to incidents."""
    by_system: dict[int | None, list[tuple[str, str, float, dt.datetime]]] = defaultdict(list)
    for (system_id, metric, subject), (value, at) in values.items():
        by_system[system_id].append((metric, subject, value, at))
    rules = list(AlertRule.objects.filter(enabled=True).prefetch_related("systems"))
    evaluated = [sid for sid in by_system if sid is not None]
    states = {
        s.fingerprint: s
        for s in AlertState.objects.filter(rule__in=rules).filter(
            Q(system_id__in=evaluated) | Q(system__isnull=True)
        )
    }
    transitions: list[tuple[AlertState, str]] = []
    for rule in rules:
        spec = METRICS.get(rule.metric)
        if spec is None:
            continue  # shown as a problem on the rule's admin page; never crashes a round
        compare = COMPARE[rule.comparison]
        only = {s.pk for s in rule.systems.all()}
        for system_id, series in by_system.items():
            system = systems.get(system_id) if system_id is not None else None
            kind = system.kind if system else ""
            if kind not in spec.kinds or (rule.system_kind and kind != rule.system_kind):
                continue
            if only and system_id not in only:
                continue
            if system_id in failed and rule.metric != "up":
                continue  # no data this round: the state stands until the system answers
            for metric, subject, value, at in series:
                if metric != rule.metric:
                    continue
                fp = fingerprint_for(rule, system_id, subject)
                matches = compare(value, rule.threshold)
                state = states.get(fp)
                if state is None:
                    if not matches:
                        continue  # OK series need no row
                    state = AlertState(
                        rule=rule,
                        system_id=system_id,
                        subject=subject,
                        fingerprint=fp,
                        status=AlertStatus.OK,
                        since=at,
                        last_evaluated_at=at,
                    )
                    states[fp] = state
                change = _step(state, rule, matches, value, at)
                if change:
                    transitions.append((state, change))
            # A container or filesystem that is gone from the system no longer crosses the
            # line (a system-level figure that is merely missing keeps its state).
            present = {subject for _, subject, _, _ in series}
            for state in list(states.values()):
                if (
                    state.rule_id == rule.pk
                    and state.system_id == system_id
                    and state.subject
                    and state.subject not in present
                    and state.status != AlertStatus.OK
                ):
                    change = _step(state, rule, False, None, timezone.now())
                    if change:
                        transitions.append((state, change))
    dirty = [s for s in states.values() if getattr(s, "_dirty", False)]
    with transaction.atomic():
        for state in dirty:
            state.save()
    for state, change in transitions:
        _deliver(state, change)
    alerts_redeliver(exclude={s.pk for s, _ in transitions})
    return transitions


def _step(
    state: AlertState, rule: AlertRule, matches: bool, value: float | None, at: dt.datetime
) -> str | None:
    state._dirty = True
    # A clock stepped back must not make the for-duration negative or re-order evidence.
    at = max(at, state.last_evaluated_at)
    state.last_evaluated_at = at
    if value is not None:
        state.last_value = value
    if matches:
        state.evidence = [*state.evidence, [at.isoformat(), value]][-EVIDENCE_LIMIT:]
        # The fault is back within the hold time: the alert never stopped firing, so its
        # incident stays open and nobody is paged a second time.
        state.clearing_since = None
        if state.status == AlertStatus.OK:
            state.status, state.since = AlertStatus.PENDING, at
        if (
            state.status == AlertStatus.PENDING
            and (at - state.since).total_seconds() >= rule.for_seconds
        ):
            state.status, state.since, state.delivered = AlertStatus.FIRING, at, False
            return "firing"
        return None
    if state.status == AlertStatus.FIRING:
        if state.clearing_since is None:
            state.clearing_since = at
        if (at - state.clearing_since).total_seconds() < rule.keep_firing_seconds:
            return None
        state.status, state.since, state.delivered = AlertStatus.OK, at, False
        state.clearing_since = None
        return "resolved"
    if state.status == AlertStatus.PENDING:
        state.status, state.since, state.evidence = AlertStatus.OK, at, []
    return None


def _alert_systems(state: AlertState) -> list[System]:
    if state.system_id is None:
        return []
    systems = [state.system]
    if state.subject and state.system.kind == SystemKind.DOCKER:
        # The database or cache that runs in this container is affected too (and its
        # maintenance window suppresses the alert).
        systems += list(
            System.objects.filter(docker_engine_id=state.system_id, container_name=state.subject)
        )
    return systems


def _evidence_text(state: AlertState) -> str:
    rule = state.rule
    lines = [f"Rule: {rule.name} ({rule.condition})"]
    where = state.system.name if state.system_id else "portal"
    subject = f" [{state.subject}]" if state.subject else ""
    lines.append(f"Series: {rule.metric} on {where}{subject}")
    lines.append("Samples that crossed the line (portal time, value):")
    lines += [f"  {at}  {value:g}" for at, value in state.evidence if value is not None]
    return "\n".join(lines)


def _deliver(state: AlertState, change: str) -> None:
    """Hand a firing/resolved change to incidents; if that fails, the next round retries."""
    rule = state.rule
    where = state.system.name if state.system_id else "portal"
    title = f"{rule.name} on {where}" + (f" ({state.subject})" if state.subject else "")
    try:
        alert = alert_hand_off(
            fingerprint=state.fingerprint,
            status=change,
            title=title[:200],
            severity=rule.severity,
            category=rule.category,
            systems=_alert_systems(state),
            runbook_name=rule.runbook_name or None,
            evidence=_evidence_text(state),
            source="rule",
            auto_resolve=rule.auto_resolve,
        )
    except Exception:
        logger.exception("Incidents did not take alert %s (%s); retrying next round", title, change)
        return
    incident_id = getattr(alert, "incident_id", None)
    now = timezone.now()
    AlertState.objects.filter(pk=state.pk).update(
        delivered=True, delivered_at=now, incident_id=incident_id or state.incident_id
    )
    state.delivered, state.delivered_at = True, now
    state.incident_id = incident_id or state.incident_id
    audit_record(
        action=AuditAction.OPERATION,
        obj=rule,
        outcome=AuditOutcome.SUCCESS,
        message=(
            f"Alert {change}: {title} (last value {state.last_value:g})"
            if state.last_value is not None
            else f"Alert {change}: {title}"
        ),
    )


# A firing alert that opened no incident (a maintenance window suppressed it) is sent again
# this often, so an incident opens once the window is over and the fault is still there.
RESEND_SUPPRESSED_SECONDS = 300


def alerts_redeliver(*, exclude: set[int] = frozenset(), now: dt.datetime | None = None) -> int:
    """Send again what incidents did not take, and firing alerts that opened no incident
    (held back by a maintenance window) and are still failing: one whose condition already
    cleared and that only waits out its hold time is not sent again, or the end of a window
    would page for a fault that is gone."""
    now = now or timezone.now()
    resend_before = now - dt.timedelta(seconds=RESEND_SUPPRESSED_SECONDS)
    pending = (
        AlertState.objects.filter(
            Q(delivered=False)
            | Q(
                status=AlertStatus.FIRING,
                incident_id__isnull=True,
                delivered_at__lt=resend_before,
                clearing_since__isnull=True,
            )
        )
        .exclude(pk__in=exclude)
        .select_related("rule", "system")
    )
    count = 0
    for state in pending:
        change = "firing" if state.status == AlertStatus.FIRING else "resolved"
        _deliver(state, change)
        count += 1
    return count


# --- retention ---------------------------------------------------------------------------------


ROLLUP_SECONDS = 300


def samples_downsample(*, now: dt.datetime | None = None, chunk: dt.timedelta | None = None) -> int:
    """Fold raw samples older than the retention into 5-minute rollups, an hour at a time,
    and drop rollups past their own retention. Returns how many raw samples were folded."""
    now = now or timezone.now()
    chunk = chunk or dt.timedelta(hours=1)
    cutoff = now - dt.timedelta(days=settings.MONITORING_RAW_RETENTION_DAYS)
    folded = 0
    while True:
        oldest = Sample.objects.filter(at__lt=cutoff).order_by("at").values_list("at", flat=True)
        start = oldest.first()
        if start is None:
            break
        end = min(start + chunk, cutoff)
        buckets: dict[tuple, list[float]] = defaultdict(list)
        rows = Sample.objects.filter(at__gte=start, at__lt=end).values_list(
            "system_id", "metric", "subject", "at", "value"
        )
        for system_id, metric, subject, at, value in rows.iterator(chunk_size=5000):
            epoch = int(at.timestamp()) // ROLLUP_SECONDS * ROLLUP_SECONDS
            buckets[(system_id, metric, subject, epoch)].append(value)
        with transaction.atomic():
            SampleRollup.objects.bulk_create(
                [
                    SampleRollup(
                        system_id=system_id,
                        metric=metric,
                        subject=subject,
                        bucket=dt.datetime.fromtimestamp(epoch, tz=dt.UTC),
                        mean=sum(vals) / len(vals),
                        minimum=min(vals),
                        maximum=max(vals),
                        count=len(vals),
                    )
                    for (system_id, metric, subject, epoch), vals in buckets.items()
                ],
                batch_size=2000,
            )
            deleted, _ = Sample.objects.filter(at__gte=start, at__lt=end).delete()
        folded += deleted
    SampleRollup.objects.filter(
        bucket__lt=now - dt.timedelta(days=settings.MONITORING_ROLLUP_RETENTION_DAYS)
    ).delete()
    return folded


# --- defaults ---------------------------------------------------------------------------------

# The runbook's Common Issues as rules: (name, metric, kind, comparison, threshold, for
# seconds, severity, category, runbook, auto-resolve).
DEFAULT_RULES = [
    ("API p95 above 500 ms", "http_latency_p95_ms", SystemKind.HTTP, "gt", 500, 300, "sev2",
     "api", "High API Response Times", True),
    ("API error rate above 5%", "http_error_rate_percent", SystemKind.HTTP, "gt", 5, 60, "sev2",
     "api", "High API Response Times", True),
    # Against the slots the application's user can get: with superuser_reserved_connections,
    # an exhausted application never reaches 90% of max_connections.
    ("Database connection use above 90%", "pg_connections_usable_percent", SystemKind.POSTGRES,
     "ge", 90, 60, "sev2", "database", "Database Connection Issues", True),
    ("Database connection errors", "up", SystemKind.POSTGRES, "eq", 0, 0, "sev1", "database",
     "Database Connection Issues", True),
    ("Container unhealthy", "container_healthy", SystemKind.DOCKER, "eq", 0, 60, "sev2",
     "container", "Container Issues", True),
    ("Container restarting repeatedly", "container_restarts_5m", SystemKind.DOCKER, "ge", 3, 0,
     "sev2", "container", "Container Issues", True),
    ("Container OOM-killed", "container_oom_killed", SystemKind.DOCKER, "eq", 1, 0, "sev2",
     "container", "Container Issues", False),
    ("Container memory above 90% of its limit", "container_memory_percent", SystemKind.DOCKER,
     "gt", 90, 120, "sev3", "container", "Container Issues", True),
    ("Docker engine not answering", "up", SystemKind.DOCKER, "eq", 0, 60, "sev1", "container",
     "Container Issues", True),
    ("Disk above 90% on a Docker host", "disk_used_percent", SystemKind.DOCKER, "gt", 90, 300,
     "sev2", "other", "", True),
    ("Backup location disk above 90%", "disk_used_percent", "", "gt", 90, 300, "sev2", "other",
     "", True),
    ("Redis not answering", "up", SystemKind.REDIS, "eq", 0, 60, "sev2", "other",
     "High API Response Times", True),
]  # fmt: skip


def monitoring_load_defaults() -> None:
    for (name, metric, kind, comparison, threshold, for_seconds, severity, category, runbook,
         auto_resolve) in DEFAULT_RULES:  # fmt: skip
        if not AlertRule.objects.filter(name=name).exists():
            AlertRule.objects.create(
                name=name,
                metric=metric,
                system_kind=kind,
                comparison=comparison,
                threshold=threshold,
                for_seconds=for_seconds,
                severity=severity,
                category=category,
                runbook_name=runbook,
                auto_resolve=auto_resolve,
                description="Loaded from the runbook's Monitoring & Alerting defaults.",
            )
    task = periodic_task_ensure(
        name="Collect key metrics",
        task="monitoring.collect",
        every_seconds=10,
        description="Samples each system whose collection interval has elapsed and "
        "evaluates the alert rules.",
    )
    if task.expire_seconds is None:
        # A tick the worker could not start within its own period is dropped, not queued
        # behind the next one: collectors never pile up.
        type(task).objects.filter(pk=task.pk).update(expire_seconds=10)
    periodic_task_ensure(
        name="Downsample old samples",
        task="monitoring.downsample",
        crontab={"minute": "17"},
        description="Folds samples older than the raw retention into 5-minute rollups.",
    )
