"""The 90-day uptime bars: daily availability from the raw samples (recent days) and from the
5-minute rollups monitoring folds older samples into, with a text alternative that names each
day below full availability and the day's public incidents."""

from __future__ import annotations

import datetime as dt

from django.test import Client
from django.utils import timezone

from incidents.services import incident_open, incident_publish
from opsportal.monitoring.models import Sample, SampleRollup
from opsportal.monitoring.services import samples_downsample
from opsportal.statuspage import services
from opsportal.statuspage.models import ComponentDay
from opsportal.systems.models import HttpEndpoint, RedisCache


def _samples(system, metric, day: dt.date, values: list[float]) -> list[Sample]:
    start = dt.datetime.combine(day, dt.time(6), tzinfo=dt.UTC)
    return [
        Sample(system=system, metric=metric, at=start + dt.timedelta(minutes=10 * i), value=v)
        for i, v in enumerate(values)
    ]


def test_daily_availability_from_samples_and_rollups(components, responder):
    now = timezone.now()
    today = now.date()
    cache = RedisCache.objects.create(name="sessions", port=1, timeout_seconds=1)
    api = HttpEndpoint.objects.create(name="edge", url="http://127.0.0.1:1/", timeout_seconds=1)
    components["Database"].systems.set([cache])
    components["API"].systems.set([api])
    old, recent = today - dt.timedelta(days=30), today - dt.timedelta(days=2)
    Sample.objects.bulk_create(
        # 30 days ago: up half the time (folded into rollups below).
        _samples(cache, "up", old, [1, 1, 0, 0])
        # two days ago: raw samples, one failure in four.
        + _samples(cache, "up", recent, [1, 1, 1, 0])
        # an HTTP endpoint counts failed probes: one in five failed.
        + _samples(api, "http_error", recent, [0, 0, 1, 0, 0])
    )
    assert samples_downsample(now=now) == 4
    assert SampleRollup.objects.filter(system=cache).exists()

    incident = incident_open(title="internal", severity="sev3", category="api", reporter=responder)
    incident_publish(
        incident=incident, title="Slow API", components=[components["API"]], actor=responder
    )
    services.status_refresh()

    days = {(d.component.name, d.day): d for d in ComponentDay.objects.select_related("component")}
    assert days[("Database", old)].available_percent == 50.0
    assert days[("Database", old)].final
    assert days[("Database", recent)].available_percent == 75.0
    assert days[("API", recent)].available_percent == 80.0
    assert days[("Database", today - dt.timedelta(days=1))].available_percent is None
    assert ComponentDay.objects.filter(component=components["Database"]).count() == 90

    html = Client().get("/status/").content.decode()
    assert html.count('<li class="down"') >= 1  # the 50 % day
    assert f"{old:%d %b %Y}: 50.00 % available" in html
    assert f"{recent:%d %b %Y}: 75.00 % available" in html
    assert f"{today:%d %b %Y}: no data; incident: Slow API" in html
    assert "62.50 % uptime" in html  # the mean of the Database's days with figures


def test_past_days_are_not_computed_again(components):
    cache = RedisCache.objects.create(name="sessions", port=1, timeout_seconds=1)
    components["Database"].systems.set([cache])
    yesterday = timezone.now().date() - dt.timedelta(days=1)
    Sample.objects.bulk_create(_samples(cache, "up", yesterday, [1, 0]))
    services.status_refresh()
    row = ComponentDay.objects.get(component=components["Database"], day=yesterday)
    assert row.final and row.available_percent == 50.0
    Sample.objects.bulk_create(_samples(cache, "up", yesterday, [1, 1, 1, 1, 1, 1]))
    services.status_refresh()
    row.refresh_from_db()
    assert row.available_percent == 50.0
