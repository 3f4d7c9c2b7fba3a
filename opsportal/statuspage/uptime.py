"""Daily availability of each component from the collected samples (the last days) and the
5-minute rollups (older days): the mean, over the component's availability signals, of
each signal's daily mean. Signals: `up` (1 - `http_error` for an HTTP endpoint) of every
mapped system and `container_running` of the container it is registered in."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

from django.db.models import Avg, Count, F, Q, Sum
from django.db.models.functions import TruncDate

from opsportal.monitoring.models import Sample, SampleRollup
from opsportal.statuspage.models import Component, ComponentDay
from opsportal.systems.models import SystemKind

DAYS = 90

Signal = tuple[int, str, str]  # system id, metric, subject


def _signals(component: Component) -> list[Signal]:
    signals: list[Signal] = []
    for system in component.systems.all():
        signals.append((system.pk, "http_error" if system.kind == SystemKind.HTTP else "up", ""))
        if system.docker_engine_id and system.container_name:
            signals.append((system.docker_engine_id, "container_running", system.container_name))
    return signals


def _query(signals: set[Signal]) -> Q:
    query = Q(pk__in=[])
    for system_id, metric, subject in signals:
        query |= Q(system_id=system_id, metric=metric, subject=subject)
    return query


def _daily_means(
    signals: set[Signal], start: dt.date, end: dt.date
) -> dict[tuple[Signal, dt.date], tuple[float, int]]:
    """(signal, day) -> (availability 0..1, sample count) for days in [start, end]."""
    if not signals:
        return {}
    since = dt.datetime.combine(start, dt.time(), tzinfo=dt.UTC)
    until = dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    sums: dict[tuple[Signal, dt.date], list[float]] = defaultdict(lambda: [0.0, 0])
    raw = (
        Sample.objects.filter(_query(signals), at__gte=since, at__lt=until)
        .annotate(day=TruncDate("at", tzinfo=dt.UTC))
        .values("system_id", "metric", "subject", "day")
        .annotate(mean=Avg("value"), n=Count("id"))
    )
    rolled = (
        SampleRollup.objects.filter(_query(signals), bucket__gte=since, bucket__lt=until)
        .annotate(day=TruncDate("bucket", tzinfo=dt.UTC))
        .values("system_id", "metric", "subject", "day")
        .annotate(total=Sum(F("mean") * F("count")), n=Sum("count"))
    )
    for row in raw:
        entry = sums[((row["system_id"], row["metric"], row["subject"]), row["day"])]
        entry[0] += row["mean"] * row["n"]
        entry[1] += row["n"]
    for row in rolled:
        entry = sums[((row["system_id"], row["metric"], row["subject"]), row["day"])]
        entry[0] += row["total"]
        entry[1] += row["n"]
    result = {}
    for (signal, day), (total, n) in sums.items():
        mean = total / n if n else None
        if mean is None:
            continue
        result[(signal, day)] = (1.0 - mean if signal[1] == "http_error" else mean, n)
    return result


def uptime_update(*, components: list[Component], today: dt.date) -> dict[int, dict]:
    """Compute the days not yet final (today's always) and return, per component, its 90
    days as {day: ComponentDay}."""
    first = today - dt.timedelta(days=DAYS - 1)
    existing: dict[int, dict[dt.date, ComponentDay]] = defaultdict(dict)
    for row in ComponentDay.objects.filter(component__in=components, day__gte=first):
        existing[row.component_id][row.day] = row
    per_component = {c.pk: _signals(c) for c in components}
    missing = {
        c.pk: [
            first + dt.timedelta(days=i)
            for i in range(DAYS)
            if not ((row := existing[c.pk].get(first + dt.timedelta(days=i))) and row.final)
        ]
        for c in components
    }
    needed = [day for days in missing.values() for day in days]
    if needed:
        signals = {s for c in components if missing[c.pk] for s in per_component[c.pk]}
        means = _daily_means(signals, min(needed), max(needed))
        changed, created = [], []
        for component in components:
            for day in missing[component.pk]:
                found = [means[(s, day)] for s in per_component[component.pk] if (s, day) in means]
                percent = round(sum(m for m, _ in found) / len(found) * 100, 3) if found else None
                samples = sum(n for _, n in found)
                # A past day with no samples may still get rollups later (downsampling runs
                # behind): it becomes final only once it has figures or is a week old.
                final = day < today and (found or day < today - dt.timedelta(days=7))
                row = existing[component.pk].get(day)
                if row is None:
                    row = ComponentDay(
                        component=component,
                        day=day,
                        available_percent=percent,
                        samples=samples,
                        final=bool(final),
                    )
                    created.append(row)
                    existing[component.pk][day] = row
                else:
                    row.available_percent, row.samples, row.final = percent, samples, bool(final)
                    changed.append(row)
        ComponentDay.objects.bulk_create(created, ignore_conflicts=True)
        ComponentDay.objects.bulk_update(changed, ["available_percent", "samples", "final"])
    return existing
