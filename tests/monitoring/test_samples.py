"""Stored samples (opsportal.monitoring.services.samples): old samples are folded into
rollups and dropped past retention; a series that stopped reporting leaves the newest-value
table (/metrics) once stale, and a deleted system's at once."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from opsportal.monitoring import services
from opsportal.monitoring.models import CollectionSchedule, Sample, SampleRollup
from opsportal.systems.models import HttpEndpoint
from tests.monitoring.conftest import collect_now


def test_old_samples_are_downsampled_then_dropped(db, http_endpoint, settings):
    now = timezone.now()
    old = now - dt.timedelta(days=8)
    bucket_start = old.replace(minute=0, second=0, microsecond=0)
    values = {}
    for i in range(10):  # ten samples within one 5-minute bucket
        at = bucket_start + dt.timedelta(seconds=30 * i)
        services.samples_store(values={(http_endpoint.pk, "http_latency_ms", ""): (i * 10.0, at)})
    services.samples_store(values={(http_endpoint.pk, "http_latency_ms", ""): (5.0, now)})
    ancient = now - dt.timedelta(days=settings.MONITORING_ROLLUP_RETENTION_DAYS + 1)
    services.samples_store(values={(http_endpoint.pk, "http_error", ""): (1.0, ancient)})
    del values

    folded = services.samples_downsample(now=now)
    assert folded == 11
    assert Sample.objects.filter(system_id=http_endpoint.pk).count() == 1  # the recent one
    (rollup,) = SampleRollup.objects.filter(metric="http_latency_ms")
    assert (rollup.count, rollup.minimum, rollup.maximum, rollup.mean) == (10, 0, 90, 45)
    assert not SampleRollup.objects.filter(metric="http_error").exists()  # past retention


@pytest.mark.docker
def test_removed_container_leaves_metrics_once_its_series_are_stale(
    docker_engine, run_container, client, settings
):
    import time

    from opsportal.monitoring.models import LatestValue

    settings.MONITORING_STALE_SERIES_SECONDS = 5
    gone = run_container(["sleep", "300"])
    collect_now()
    CollectionSchedule.objects.filter(pk=docker_engine.pk).update(interval_seconds=5)
    label = f'container="{gone.name}"'
    assert label in client.get("/metrics").content.decode()
    first_seen = LatestValue.objects.get(
        system=docker_engine, metric="container_running", subject=gone.name
    ).at

    gone.remove(force=True)
    collect_now()  # the container is gone, but its figures are not stale yet
    assert label in client.get("/metrics").content.decode()

    # Stale: not updated for three of the engine's 5 s intervals (longer than the 5 s age).
    time.sleep(max(0.0, 15.5 - (timezone.now() - first_seen).total_seconds()))
    collect_now()
    body = client.get("/metrics").content.decode()
    assert label not in body
    assert not LatestValue.objects.filter(subject=gone.name).exists()
    # The engine's own figures, updated every round, stay.
    assert f'opsportal_collection_up{{kind="docker",system="{docker_engine.name}"}} 1.0' in body
    assert Sample.objects.filter(subject=gone.name).exists()  # history kept for retention


def test_deleted_system_leaves_metrics_at_once(db, client, http_server):
    endpoint = HttpEndpoint.objects.create(name="soon-gone", url=http_server.url + "/health")
    collect_now()
    assert 'system="soon-gone"' in client.get("/metrics").content.decode()
    endpoint.delete()  # as the admin's delete does; no collection round runs after it
    assert 'system="soon-gone"' not in client.get("/metrics").content.decode()
