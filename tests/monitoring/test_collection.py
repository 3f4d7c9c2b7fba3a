"""Collectors against the real systems: an HTTP server, PostgreSQL, Redis, containers."""

from __future__ import annotations

import threading
import time

import docker
import pytest
import redis
from django.db import connection

from opsportal.monitoring import services
from opsportal.monitoring.models import CollectionSchedule, LatestValue, Sample
from opsportal.systems.models import RedisCache
from tests import realsystems
from tests.monitoring.conftest import collect_now, wait_until


def latest(system, metric: str, subject: str = "") -> float | None:
    row = LatestValue.objects.filter(
        system_id=system.pk if system else None, metric=metric, subject=subject
    ).first()
    return row.value if row else None


def test_http_probe_latency_p95_and_error_rate_over_the_window(http_endpoint, http_server):
    for _ in range(3):
        collect_now()
    assert latest(http_endpoint, "up") == 1.0
    assert latest(http_endpoint, "http_error_rate_percent") == 0.0
    fast_p95 = latest(http_endpoint, "http_latency_p95_ms")
    assert fast_p95 is not None and fast_p95 < 200

    http_server.behaviour.delay_seconds = 0.6
    collect_now()
    # 1 slow probe of 4: the nearest-rank p95 is the slow one, the median is not.
    assert latest(http_endpoint, "http_latency_p95_ms") >= 600
    assert latest(http_endpoint, "http_latency_p50_ms") < 200

    http_server.behaviour.delay_seconds = 0
    http_server.behaviour.status = 503
    collect_now()
    assert latest(http_endpoint, "http_error") == 1.0
    assert latest(http_endpoint, "http_error_rate_percent") == pytest.approx(20.0)
    # Every probe is one raw sample per figure, all with the portal's timestamps.
    assert Sample.objects.filter(system_id=http_endpoint.pk, metric="http_latency_ms").count() == 5


def test_http_timeout_counts_as_an_error_not_a_collection_failure(http_endpoint, http_server):
    http_endpoint.timeout_seconds = 0.3
    http_endpoint.save()
    http_server.behaviour.delay_seconds = 1.0
    collect_now()
    assert latest(http_endpoint, "up") == 1.0
    assert latest(http_endpoint, "http_error") == 1.0
    assert latest(http_endpoint, "http_error_rate_percent") == 100.0


def test_postgres_connection_states_against_max_connections(small_postgres, open_connections):
    idle = open_connections(small_postgres.port, count=2)
    in_transaction = open_connections(small_postgres.port)[0]
    in_transaction.execute("BEGIN")
    in_transaction.execute("SELECT 1")
    sleeper = open_connections(small_postgres.port)[0]
    thread = threading.Thread(target=lambda: sleeper.execute("SELECT pg_sleep(3)"), daemon=True)
    thread.start()
    time.sleep(0.5)
    collect_now()
    assert latest(small_postgres, "pg_connections_max") == 10
    assert latest(small_postgres, "pg_connections_idle") == len(idle)
    assert latest(small_postgres, "pg_connections_idle_in_transaction") == 1
    assert latest(small_postgres, "pg_connections_active") == 1
    # 4 client connections plus the collector's own, of 10.
    assert latest(small_postgres, "pg_connections_used_percent") == 50.0
    thread.join()


def test_postgres_long_running_queries(postgres_target, open_connections, settings):
    settings.MONITORING_LONG_QUERY_SECONDS = 1
    sleeper = open_connections(postgres_target.port, dbname=postgres_target.dbname)[0]
    thread = threading.Thread(target=lambda: sleeper.execute("SELECT pg_sleep(4)"), daemon=True)
    thread.start()
    time.sleep(1.8)
    collect_now()
    assert latest(postgres_target, "pg_long_running_queries") >= 1
    thread.join()


def test_redis_hit_rate_memory_and_evictions(redis_target):
    client = redis.Redis(host=redis_target.host, port=redis_target.port, db=redis_target.db)
    collect_now()
    client.set("monitoring:key", "v")
    for _ in range(3):
        client.get("monitoring:key")
    client.get("monitoring:missing")
    collect_now()
    # Since the previous sample: 3 hits and 1 miss (other clients of this shared server
    # may add lookups, so the rate is bounded rather than exact).
    rate = latest(redis_target, "redis_hit_rate_percent")
    assert rate is not None and 0 < rate <= 100
    assert latest(redis_target, "redis_memory_used_bytes") > 0
    assert latest(redis_target, "redis_evicted_keys") >= 0
    client.close()


def test_unreachable_system_is_a_recorded_sample_not_a_crash(db, http_endpoint):
    dead = RedisCache.objects.create(
        name="dead-redis", host="127.0.0.1", port=realsystems.free_port(), timeout_seconds=0.5
    )
    result = collect_now()
    by_system = {c.system.pk: c for c in result.collected}
    assert by_system[dead.pk].ok is False
    assert "not reachable" in by_system[dead.pk].error
    assert latest(dead, "up") == 0.0
    assert latest(http_endpoint, "up") == 1.0  # the others were still collected
    schedule = CollectionSchedule.objects.get(pk=dead.pk)
    assert schedule.last_ok is False and "not reachable" in schedule.last_error
    assert schedule.lease_until is None


def test_backup_location_disk_is_sampled(db, settings, tmp_path):
    settings.BACKUP_ROOT = tmp_path / "backups"
    collect_now()
    used = latest(None, "disk_used_percent", str(settings.BACKUP_ROOT))
    assert used is not None and 0 < used < 100
    assert latest(None, "disk_free_bytes", str(settings.BACKUP_ROOT)) > 0


@pytest.mark.docker
def test_containers_state_restarts_oom_memory_and_health(docker_engine, run_container):
    looping = run_container(["sh", "-c", "sleep 0.3; exit 1"], restart_policy={"Name": "always"})
    oom = run_container(
        ["sh", "-c", "x=a; while true; do x=$x$x; done"], mem_limit="16m", memswap_limit="16m"
    )
    unhealthy = run_container(
        ["sleep", "300"],
        healthcheck={"test": ["CMD", "false"], "interval": 500_000_000, "retries": 1},
    )
    steady = run_container(["sleep", "300"], mem_limit="64m")

    def oom_killed():
        oom.reload()
        return oom.attrs["State"]["OOMKilled"]

    wait_until(oom_killed, timeout=20)

    def unhealthy_now():
        unhealthy.reload()
        return unhealthy.attrs["State"].get("Health", {}).get("Status") == "unhealthy"

    wait_until(unhealthy_now, timeout=20)
    collect_now()
    # Restarts count from the first sample monitoring took of the container.
    first_seen = latest(docker_engine, "container_restart_count", looping.name)
    wait_until(
        lambda: (looping.reload() or looping.attrs["RestartCount"]) >= first_seen + 3, timeout=60
    )
    collect_now()

    assert latest(docker_engine, "up") == 1.0
    assert latest(docker_engine, "container_oom_killed", oom.name) == 1.0
    assert latest(docker_engine, "container_running", oom.name) == 0.0
    assert latest(docker_engine, "container_healthy", unhealthy.name) == 0.0
    assert latest(docker_engine, "container_restarts_5m", looping.name) >= 3
    assert latest(docker_engine, "container_restart_count", looping.name) >= first_seen + 3
    assert latest(docker_engine, "container_running", steady.name) == 1.0
    assert latest(docker_engine, "container_memory_limit_bytes", steady.name) == 64 * 2**20
    memory = latest(docker_engine, "container_memory_percent", steady.name)
    assert memory is not None and 0 < memory < 50
    assert latest(docker_engine, "container_cpu_percent", steady.name) is not None
    assert latest(docker_engine, "engine_memory_total_bytes") > 0
    assert 0 <= latest(docker_engine, "engine_memory_used_percent") < 100
    # The engine's data root is on this host, so its disk is sampled too.
    data_root = docker.DockerClient(base_url=docker_engine.base_url).info()["DockerRootDir"]
    assert 0 < latest(docker_engine, "disk_used_percent", data_root) < 100


@pytest.mark.docker
def test_stopped_docker_engine_socket_is_a_failure_sample(db, tmp_path):
    from opsportal.systems.models import DockerEngine

    engine = DockerEngine.objects.create(
        name="gone-engine", base_url=f"unix://{tmp_path}/docker.sock", timeout_seconds=1
    )
    result = collect_now()
    (item,) = [c for c in result.collected if c.system.pk == engine.pk]
    assert not item.ok and "socket does not exist" in item.error
    assert latest(engine, "up") == 0.0


@pytest.mark.django_db(transaction=True)
def test_late_collector_does_not_overlap_a_running_one(http_endpoint, http_server):
    """A round that starts while another still holds the lease skips the system (the
    rounds run in their own threads and database connections, as workers would)."""
    http_server.behaviour.delay_seconds = 1.5
    collect_now()  # creates the schedule
    CollectionSchedule.objects.update(next_due_at=None)
    results = []

    def worker():
        try:
            results.append(services.collection_run_due())
        finally:
            connection.close()  # each thread's own connection, as a worker process would

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    collected = sum(len(r.collected) for r in results)
    assert collected == 1
    # One round's probe per run: the first run plus the single concurrent winner.
    assert Sample.objects.filter(system_id=http_endpoint.pk, metric="http_error").count() == 2
    assert len(http_server.requests) == 2


def test_each_system_keeps_its_own_interval(http_endpoint, redis_target):
    collect_now()
    # As the admin's list edit saves them:
    for pk, interval in ((redis_target.pk, 3600), (http_endpoint.pk, 5)):
        schedule = CollectionSchedule.objects.get(pk=pk)
        schedule.interval_seconds = interval
        schedule.save()
    time.sleep(5.2)
    result = services.collection_run_due()
    assert [c.system.pk for c in result.collected] == [http_endpoint.pk]


@pytest.mark.docker
def test_restarts_before_the_first_sample_are_counted(docker_engine, run_container):
    """A container that was already crash-looping when monitoring first saw it: the engine's
    RestartCount (counted from the container's creation, a minute ago) is the baseline, so
    the restarts before the first sample count and the default rule fires at once."""
    from incidents.models import Incident
    from incidents.services import incidents_load_defaults

    incidents_load_defaults()
    services.monitoring_load_defaults()
    looping = run_container(["sh", "-c", "sleep 0.3; exit 1"], restart_policy={"Name": "always"})
    wait_until(lambda: (looping.reload() or looping.attrs["RestartCount"]) >= 3, timeout=60)
    assert not Sample.objects.filter(subject=looping.name).exists()

    collect_now()  # monitoring's first sample of this container

    looping.reload()
    restarts = latest(docker_engine, "container_restarts_5m", looping.name)
    sampled = latest(docker_engine, "container_restart_count", looping.name)
    assert restarts == sampled >= 3
    assert sampled <= looping.attrs["RestartCount"]
    (incident,) = Incident.objects.filter(title__contains=looping.name)
    assert incident.title.startswith("Container restarting repeatedly")


@pytest.mark.docker
def test_an_oom_kill_the_restart_policy_recovered_is_reported_once(docker_engine, run_container):
    """The engine keeps OOMKilled set on a container its restart policy brought back; the
    sample says "OOM-killed" for the kill, not for ever after (the rule would never clear)."""
    once = run_container(
        [
            "sh",
            "-c",
            "if [ ! -f /oomed ]; then touch /oomed; x=a; while true; do x=$x$x; done; fi; "
            "exec sleep 300",
        ],
        mem_limit="16m",
        memswap_limit="16m",
        restart_policy={"Name": "always"},
    )

    def recovered():
        once.reload()
        state = once.attrs["State"]
        return state["Running"] and once.attrs["RestartCount"] >= 1 and state["OOMKilled"]

    wait_until(recovered, timeout=60)
    collect_now()  # first look: restarted since it was created, because of the OOM kill
    assert latest(docker_engine, "container_oom_killed", once.name) == 1.0
    assert latest(docker_engine, "container_running", once.name) == 1.0
    collect_now()  # nothing new since: running again, no restart
    once.reload()
    assert once.attrs["State"]["OOMKilled"] is True  # the engine still says so
    assert latest(docker_engine, "container_oom_killed", once.name) == 0.0


def test_postgres_connections_waiting_on_a_lock(small_postgres, open_connections):
    holder, waiter = open_connections(small_postgres.port, count=2)
    holder.execute("CREATE TABLE IF NOT EXISTS monitoring_lock_drill (id int)")
    holder.execute("BEGIN")
    holder.execute("LOCK TABLE monitoring_lock_drill IN ACCESS EXCLUSIVE MODE")
    thread = threading.Thread(
        target=lambda: waiter.execute("SELECT * FROM monitoring_lock_drill"), daemon=True
    )
    thread.start()
    try:
        time.sleep(0.5)
        collect_now()
        assert latest(small_postgres, "pg_connections_waiting") == 1
        assert latest(small_postgres, "pg_connections_idle_in_transaction") == 1
    finally:
        holder.execute("ROLLBACK")
        thread.join()
        holder.execute("DROP TABLE monitoring_lock_drill")
    collect_now()
    assert latest(small_postgres, "pg_connections_waiting") == 0


def test_redis_evictions_and_exact_hit_rate_on_a_private_server(db, tmp_path):
    """A Redis server of our own (maxmemory 2 MB, allkeys-lru), so the evictions are real
    and no other client's lookups blur the hit rate."""
    import subprocess

    port = realsystems.free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path), "--maxmemory", "2mb",
         "--maxmemory-policy", "allkeys-lru"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        client = redis.Redis(host="127.0.0.1", port=port)
        wait_until(lambda: _pings(client), timeout=10, step=0.1)
        cache = RedisCache.objects.create(name="private-redis", host="127.0.0.1", port=port)
        collect_now()
        client.set("k", "v")
        for _ in range(3):
            client.get("k")
        client.get("missing")
        for i in range(100):  # 100 keys of 64 kB into 2 MB: most are evicted
            client.set(f"big:{i}", b"x" * 65536)
        collect_now()
        assert latest(cache, "redis_hit_rate_percent") == pytest.approx(75.0)
        assert latest(cache, "redis_evicted_keys") >= 50
        assert latest(cache, "redis_memory_used_bytes") > 1_000_000
        client.close()
    finally:
        server.terminate()
        server.wait(10)


def _pings(client) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


@pytest.mark.docker
def test_container_cpu_against_its_limit(docker_engine, run_container):
    busy = run_container(["sh", "-c", "while :; do :; done"], nano_cpus=500_000_000)
    unlimited = run_container(["sleep", "300"])
    collect_now()
    time.sleep(6)
    collect_now()
    # Half a CPU, used in full: 50% of one CPU, 100% of its limit. The rate is taken over
    # the portal's sample times, not the engine's reading times, so it is only roughly 50%
    # on a busy shared engine.
    cpu = latest(docker_engine, "container_cpu_percent", busy.name)
    assert 35 <= cpu <= 75
    assert latest(docker_engine, "container_cpu_limit_percent", busy.name) == pytest.approx(
        cpu * 2, abs=0.01
    )
    assert latest(docker_engine, "container_cpu_limit_cores", busy.name) == 0.5
    assert latest(docker_engine, "container_cpu_limit_percent", unlimited.name) is None
