"""The overview's sparklines: series_recent thins each series to the values
floor(i * n / points) (i < points - 1) and the last one, whatever n is, and leaves short
series whole (a float step once picked the value before for n = 84 and others), oldest
first, leaving out older samples and containers' (subjects') series."""

import datetime as dt

import pytest
from django.utils import timezone

from opsportal.monitoring.models import Sample
from opsportal.monitoring.selectors import series_recent
from opsportal.systems.models import HttpEndpoint

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("n", [5, 60, 61, 84, 120, 130])
def test_each_series_keeps_the_rows_of_an_even_step_and_its_last(n):
    points = 60
    now = timezone.now()
    api = HttpEndpoint.objects.create(name="spark-api", url="http://127.0.0.1:9/")
    other = HttpEndpoint.objects.create(name="spark-other", url="http://127.0.0.1:9/")
    times = [now - dt.timedelta(seconds=15 * (n - k)) for k in range(n)]
    Sample.objects.bulk_create(
        [
            Sample(at=at, system=api, metric="http_latency_p95_ms", value=k)
            for k, at in reversed(list(enumerate(times)))  # newest first: read back by time
        ]
        + [Sample(at=now, system=other, metric="http_latency_p95_ms", value=1.0)]
        # Older than the window and of a container (a subject): not part of the series.
        + [
            Sample(
                at=now - dt.timedelta(hours=2), system=api, metric="http_latency_p95_ms", value=-1
            )
        ]
        + [Sample(at=now, system=api, metric="http_latency_p95_ms", subject="c1", value=-2)]
    )
    series = series_recent(
        system_ids=[api.pk, other.pk],
        metrics=["http_latency_p95_ms"],
        since=now - dt.timedelta(hours=1),
        points=points,
    )
    kept = [int(value) for value in series[(api.pk, "http_latency_p95_ms")]]
    expected = (
        list(range(n)) if n <= points else [i * n // points for i in range(points - 1)] + [n - 1]
    )
    assert kept == expected
    assert series[(other.pk, "http_latency_p95_ms")] == [1.0]
