"""Maintenance benchmarks (targets from issue 5):

- generate 10 years of occurrences for 20 plans: under 100 ms;
- answer "which systems are in maintenance now" with 10,000 windows stored: under 5 ms.

Runs against the database in DATABASE_URL (`make bench` sources deploy/dev/test.env); it
creates a scratch database from it, and drops it at the end.

    .venv/bin/python bench/maintenance.py
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "opsportal.settings")


def timed(fn, repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def row(name: str, samples: list[float], target: float | None) -> str:
    median = statistics.median(samples)
    p95 = sorted(samples)[int(len(samples) * 0.95) - 1] if len(samples) >= 20 else max(samples)
    verdict = "" if target is None else ("ok" if median < target else "MISSED")
    target_text = "" if target is None else f"< {target:g}"
    return f"{name:<58} {median:>9.2f} {p95:>9.2f} {target_text:>8} {verdict:>7}"


def main() -> None:
    import django

    django.setup()
    from django.db import connection
    from django.test.utils import setup_databases, teardown_databases

    connection.settings_dict["TEST"]["NAME"] = f"opsportal_bench_{uuid.uuid4().hex[:8]}"
    old = setup_databases(verbosity=0, interactive=False)
    try:
        run(connection)
    finally:
        teardown_databases(old, verbosity=0)


def run(connection) -> None:
    from django.utils import timezone

    from maintenance.models import MaintenancePlan, MaintenanceWindow, WindowStatus
    from maintenance.selectors import systems_in_maintenance
    from maintenance.services import plan_occurrences
    from opsportal.systems.models import HttpEndpoint

    rules = [
        "FREQ=MONTHLY;BYDAY=SA;BYSETPOS=3",
        "FREQ=MONTHLY;BYMONTH=1,4,7,10;BYDAY=SA;BYSETPOS=1",
        "FREQ=YEARLY;BYMONTH=2;BYDAY=SA;BYSETPOS=1",
        "FREQ=WEEKLY;BYDAY=SU",
        "FREQ=MONTHLY;BYMONTHDAY=-1",
    ]
    plans = [
        MaintenancePlan(
            name=f"plan {i}",
            rrule=rules[i % len(rules)],
            first_start=dt.datetime(2026, 1, 1, 2, tzinfo=dt.UTC),
            time_zone="UTC" if i % 2 else "Europe/Paris",
            duration_minutes=60,
        )
        for i in range(20)
    ]
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    end = dt.datetime(2036, 1, 1, tzinfo=dt.UTC)
    count = sum(len(plan_occurrences(plan=p, start=start, end=end)) for p in plans)
    generate = timed(
        lambda: [plan_occurrences(plan=p, start=start, end=end) for p in plans], repeat=20
    )

    # 10,000 windows over ten years on 50 systems; 3 in progress now.
    systems = [
        HttpEndpoint.objects.create(name=f"bench-api-{i}", url=f"http://127.0.0.1:9/{i}")
        for i in range(50)
    ]
    now = timezone.now()
    windows = []
    for i in range(10_000):
        starts_at = now - dt.timedelta(days=1800) + dt.timedelta(hours=9 * i)
        windows.append(
            MaintenanceWindow(
                title=f"bench {i}",
                starts_at=starts_at,
                ends_at=starts_at + dt.timedelta(hours=2),
                status=WindowStatus.COMPLETED if starts_at < now else WindowStatus.PLANNED,
                suppress_from=starts_at if starts_at < now else None,
                suppress_until=starts_at + dt.timedelta(hours=2) if starts_at < now else None,
            )
        )
    for i in range(3):
        windows.append(
            MaintenanceWindow(
                title=f"bench now {i}",
                starts_at=now - dt.timedelta(minutes=30),
                ends_at=now + dt.timedelta(hours=1),
                status=WindowStatus.IN_PROGRESS,
                suppress_from=now - dt.timedelta(minutes=30),
                suppress_until=now + dt.timedelta(hours=1),
            )
        )
    created = MaintenanceWindow.objects.bulk_create(windows, batch_size=2000)
    through = MaintenanceWindow.systems.through
    through.objects.bulk_create(
        [
            through(maintenancewindow_id=w.pk, system_id=systems[(i + k) % 50].pk)
            for i, w in enumerate(created)
            for k in range(3)
        ],
        batch_size=5000,
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE maintenance_maintenancewindow")
        cursor.execute("ANALYZE maintenance_maintenancewindow_systems")
    moment = timezone.now()
    expected = {
        systems[(i + k) % 50].pk
        for i, w in enumerate(created)
        if w.suppress_from and w.suppress_from <= moment < w.suppress_until
        for k in range(3)
    }
    assert set(systems_in_maintenance(at=moment)) == expected
    lookup = timed(systems_in_maintenance, repeat=200)

    # Baseline in the same run: the same question answered without the suppression
    # range index, by status and times (what a naive implementation would do).
    def naive():
        return {
            row.system_id: row.maintenancewindow
            for row in through.objects.filter(
                maintenancewindow__status=WindowStatus.IN_PROGRESS,
                maintenancewindow__starts_at__lte=timezone.now(),
                maintenancewindow__ends_at__gt=timezone.now(),
            ).select_related("maintenancewindow")
        }

    baseline = timed(naive, repeat=200)

    print(f"{'figure (ms)':<58} {'median':>9} {'p95':>9} {'target':>8} {'':>7}")
    print(row(f"10 years of occurrences, 20 plans ({count} occurrences)", generate, 100))
    print(row("systems in maintenance now, 10,003 windows stored", lookup, 5))
    print(row("  baseline: same question by status and times", baseline, None))
    ratio = statistics.median(baseline) / statistics.median(lookup)
    print(f"{'  ratio baseline / indexed lookup':<58} {ratio:>9.2f}")


if __name__ == "__main__":
    main()
