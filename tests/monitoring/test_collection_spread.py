"""A collection round shared by two real worker processes (as on two hosts): beat's tick,
run from a separate portal process, leases every due system and sends one share per system
to the collect queue. Both workers take shares, no system is collected twice, and a hung
system (a PostgreSQL port that accepts and never answers) holds one worker for its own
timeout while the other collects everything else.

On Redis (production's broker) and on the filesystem broker of `make run`, which several
worker processes on one host share: a message is claimed by an atomic rename, so exactly one
worker takes it."""

from __future__ import annotations

import contextlib
import datetime as dt

import pytest
from django.conf import settings

from opsportal.monitoring.models import CollectionSchedule, Sample
from opsportal.systems.models import HttpEndpoint, PostgresDatabase
from tests import realsystems
from tests.workers import (
    celery_worker,
    clear_queue,
    run_in_portal_process,
    wait_until,
    worker_log,
)

pytestmark = pytest.mark.django_db(transaction=True)

HUNG_TIMEOUT_SECONDS = 5
FAST_SYSTEMS = 6


def shares_run(worker) -> int:
    return sum(
        1
        for line in worker_log(worker).splitlines()
        if "monitoring.collect_systems[" in line and "succeeded" in line
    )


@pytest.mark.parametrize("broker", ["redis", "filesystem"])
def test_two_workers_share_a_round_and_a_hung_system_delays_only_itself(broker, tmp_path):
    if broker == "redis":
        broker_url, env = settings.CELERY_BROKER_URL, {}
        clear_queue(broker_url)
    else:
        broker_url, env = "filesystem://", {"OPSPORTAL_VAR_DIR": str(tmp_path / "var")}
    with contextlib.ExitStack() as stack:
        hung_port = stack.enter_context(realsystems.silent_listener())
        # Created first, so its share is sent first: one worker is held by it at once.
        hung = PostgresDatabase.objects.create(
            name="hung-db",
            host="127.0.0.1",
            port=hung_port,
            dbname="postgres",
            connect_timeout_seconds=HUNG_TIMEOUT_SECONDS,
        )
        servers = [stack.enter_context(realsystems.http_server()) for _ in range(FAST_SYSTEMS)]
        fast = [
            HttpEndpoint.objects.create(name=f"api-{n}", url=s.url + "/health", timeout_seconds=2)
            for n, s in enumerate(servers)
        ]
        workers = [
            stack.enter_context(
                celery_worker(
                    broker_url=broker_url,
                    log_dir=tmp_path,
                    name_prefix=f"host-{name}",
                    env=env,
                    extra_args=("-Q", "collect"),
                )
            )
            for name in ("a", "b")
        ]
        out = run_in_portal_process(
            "from opsportal.monitoring.tasks import collect\n"
            "print('leased', collect.apply().result)",
            broker_url=broker_url,
            env=env,
        )
        assert f"leased {FAST_SYSTEMS + 1}" in out, out
        dispatched_at = CollectionSchedule.objects.get(pk=hung.pk).last_started_at

        def finished(system) -> dt.datetime | None:
            schedule = CollectionSchedule.objects.get(pk=system.pk)
            return schedule.last_finished_at if schedule.lease_until is None else None

        fast_done = wait_until(
            lambda: all(finished(s) for s in fast) and [finished(s) for s in fast],
            "every answering system's share",
        )
        # The hung system delayed nobody: the others were stored before its own timeout.
        assert max(fast_done) - dispatched_at < dt.timedelta(seconds=HUNG_TIMEOUT_SECONDS)
        hung_done = wait_until(lambda: finished(hung), "the hung system's share", timeout=30)
        assert hung_done - dispatched_at >= dt.timedelta(seconds=HUNG_TIMEOUT_SECONDS)
        # Each worker took a share: one was held by the hung system meanwhile.
        wait_until(lambda: sum(shares_run(w) for w in workers) == FAST_SYSTEMS + 1, "logs")
        assert all(shares_run(w) >= 1 for w in workers)

    schedule = CollectionSchedule.objects.get(pk=hung.pk)
    assert schedule.last_ok is False and "hung-db" in schedule.last_error
    # Nothing was collected twice: one sample of `up` per system, one probe per endpoint.
    for system in [hung, *fast]:
        assert Sample.objects.filter(system_id=system.pk, metric="up").count() == 1
    assert Sample.objects.get(system_id=hung.pk, metric="up").value == 0.0
    assert [len(s.requests) for s in servers] == [1] * FAST_SYSTEMS
