"""Alert rules: stepping each rule's state (pending, firing, holding, resolved) on the series
just collected."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import defaultdict

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from opsportal.monitoring.catalogue import METRICS
from opsportal.monitoring.models import COMPARE, AlertRule, AlertState, AlertStatus
from opsportal.monitoring.services.alert_delivery import (
    _deliver,
    _delivery_order,
    alerts_redeliver,
)
from opsportal.monitoring.services.samples import SeriesValues
from opsportal.systems.models import System

EVIDENCE_LIMIT = 20


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
    redeliver: Q | None = None,
) -> list[tuple[AlertState, str]]:
    """Step every enabled rule on the series just collected; return (state, "firing" |
    "resolved") for each rule that changed, after handing the change to incidents.
    Undelivered alerts are sent again, all of them or those `redeliver` selects (a share
    of a round sends its own systems', so two shares never send one alert twice)."""
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
    for state, change in sorted(transitions, key=lambda t: _delivery_order(t[0])):
        _deliver(state, change, first=True)
    alerts_redeliver(exclude={s.pk for s, _ in transitions}, only=redeliver)
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
