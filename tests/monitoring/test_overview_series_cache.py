"""The overview's sparklines are read once per stored round and shared through the cache:
a sample only counts once its round is stored (committed), and a new round shows at once."""

import datetime as dt

import pytest
from django.utils import timezone

from opsportal.monitoring import services
from opsportal.monitoring.models import Sample
from opsportal.monitoring.selectors import systems_status
from opsportal.systems.models import HttpEndpoint

# Transactional: the round's mark is set when its transaction commits, as in production.
pytestmark = pytest.mark.django_db(transaction=True)

METRIC = "http_latency_p95_ms"


def latency_line(system: HttpEndpoint, now: dt.datetime) -> list[float]:
    (status,) = [s for s in systems_status(now=now) if s.system.pk == system.pk]
    return next(f.values for f in status.figures if f.metric == METRIC)


def test_a_stored_round_shows_at_once_and_reads_are_reused_until_then():
    api = HttpEndpoint.objects.create(name="cached-api", url="http://127.0.0.1:9/")
    now = timezone.now()
    key = (api.pk, METRIC, "")
    services.samples_store(values={key: (10.0, now - dt.timedelta(minutes=2))})
    assert latency_line(api, now) == [10.0]

    # Written behind the collector's back: no round was stored, so the overview still
    # shows what it read for the last one (that is the reuse).
    Sample.objects.create(system=api, metric=METRIC, value=99.0, at=now - dt.timedelta(minutes=1))
    assert latency_line(api, now + dt.timedelta(seconds=59)) == [10.0]
    # A read serves for a minute at most: after that it is read again, round or not.
    assert latency_line(api, now + dt.timedelta(seconds=61)) == [10.0, 99.0]

    # The next round is stored: everything since is read again.
    services.samples_store(values={key: (20.0, now)})
    assert latency_line(api, now) == [10.0, 99.0, 20.0]

    # The hour's window moves on without a new round.
    assert latency_line(api, now + dt.timedelta(minutes=59, seconds=30)) == [20.0]


def test_the_worker_reads_them_after_a_round_so_views_do_not(http_endpoint):
    round_ = services.collection_run_due()
    assert [c.system.pk for c in round_.collected] == [http_endpoint.pk]
    stored = list(
        Sample.objects.filter(system=http_endpoint, metric=METRIC).values_list("value", flat=True)
    )
    assert len(stored) == 1  # the round's own latency
    # Written after the worker read the sparklines (and before any view): the views serve
    # what the worker read.
    Sample.objects.create(system=http_endpoint, metric=METRIC, value=12345.0, at=timezone.now())
    assert latency_line(http_endpoint, timezone.now()) == stored
