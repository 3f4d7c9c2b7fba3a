"""A collection round spread over the collect queue, in this process (eager tasks): the
beat task leases the due systems and sends one share per system after the leases are
committed; a share takes its lease over once, so a message delivered twice collects once; a
share the broker lost leaves a lease that lapses, and the system is due again."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone

from opsportal.monitoring import services, tasks
from opsportal.monitoring.models import CollectionSchedule, Sample
from opsportal.monitoring.signals import collection_finished


def up_samples(system) -> int:
    return Sample.objects.filter(system_id=system.pk, metric="up").count()


def test_beat_tick_sends_one_share_per_system_after_commit(
    http_endpoint, redis_target, eager_celery, django_capture_on_commit_callbacks
):
    finished = []

    def on_finished(sender, round, **kwargs):
        finished.append(round)

    collection_finished.connect(on_finished)
    try:
        with django_capture_on_commit_callbacks() as sends:
            dispatch = services.collection_dispatch_due()
            # Nothing is sent before the leases are committed.
            assert not Sample.objects.filter(metric="up").exists()
        assert sorted(dispatch.leased) == sorted([http_endpoint.pk, redis_target.pk])
        assert len(sends) == 2  # first seen: a share per system
        leases = set(CollectionSchedule.objects.values_list("lease_until", flat=True))
        assert len(leases) == 1 and None not in leases
        for send in sends:
            send()
    finally:
        collection_finished.disconnect(on_finished)
    assert up_samples(http_endpoint) == 1 and up_samples(redis_target) == 1
    assert not CollectionSchedule.objects.filter(lease_until__isnull=False).exists()
    # The status page hears of the round once, from its last share.
    assert len(finished) == 1
    # The portal's own figure (backup storage) is the beat task's, stored once.
    assert Sample.objects.filter(system=None, metric="disk_used_percent").count() == 1


def test_a_share_delivered_twice_collects_once(http_endpoint, http_server):
    leased_at = timezone.now()
    [pk] = services.collection_dispatch_due(now=leased_at, task=tasks.collect_systems).leased
    first = tasks.collect_systems.apply(args=([pk], leased_at.isoformat()))
    again = tasks.collect_systems.apply(args=([pk], leased_at.isoformat()))
    assert (first.result, again.result) == (1, 0)
    assert up_samples(http_endpoint) == 1
    assert len(http_server.requests) == 1


def test_a_lost_share_lapses_and_the_late_one_skips(http_endpoint, http_server):
    lost_at = timezone.now() - dt.timedelta(seconds=services.LEASE_SECONDS + 1)
    # A share sent and lost: its lease lapsed, so the system is due again.
    [pk] = services.collection_dispatch_due(now=lost_at).leased
    assert services.collection_dispatch_due().leased == [pk]
    # The lost message turns up late: its lease is gone, the later round's share collects.
    assert services.collection_run_leased(system_ids=[pk], leased_at=lost_at).collected == []
    assert up_samples(http_endpoint) == 0
    later = CollectionSchedule.objects.get(pk=pk).last_started_at
    assert len(services.collection_run_leased(system_ids=[pk], leased_at=later).collected) == 1
    assert up_samples(http_endpoint) == 1 and len(http_server.requests) == 1


def test_quick_systems_share_a_task_new_and_slow_ones_have_their_own(
    http_endpoint, redis_target, django_capture_on_commit_callbacks
):
    services.collection_run_due()  # both answered quickly: next time they share
    with django_capture_on_commit_callbacks() as sends:
        services.collection_dispatch_due(now=timezone.now() + dt.timedelta(minutes=1))
    assert len(sends) == 1
    CollectionSchedule.objects.filter(pk=http_endpoint.pk).update(last_duration_ms=2000)
    CollectionSchedule.objects.update(lease_until=None)
    with django_capture_on_commit_callbacks() as sends:
        services.collection_dispatch_due(now=timezone.now() + dt.timedelta(minutes=2))
    assert len(sends) == 2
