"""A collection round over a fleet, spread over real Celery worker processes (issue 15).

Registers, against real systems: at least 4 Docker engines (the test setup's unix-socket
engine, plus engines started here the way deploy/dev/test-services.sh starts its engines,
each with a daemon ID of its own) with 200 containers in all, 20 PostgreSQL databases (created on the shared server),
10 Redis caches (databases of a Redis server started here) and 20 HTTP endpoints (loopback
servers). Then measures a round, every system due: beat's task leases them and sends one
share per system to the collect queue, and the round ends when every share is stored.

  - with 1 worker process and with 2 (solo pool, `-Q collect`, as deploy/Procfile starts
    one), alternating round by round in one run so both see the same machine (the second
    worker stops and starts consuming between rounds, through Celery's remote control);
  - as the baseline, today's round before the spreading: one process collecting every due
    system with its thread pool (`collection_run_due`), alternating too.

Targets: the round inside the 30 s interval with one worker; two workers at most 0.6x the
time of one. The CPUs are shared (the workers, the engines, PostgreSQL and this process run
on the same machine), so the figures of a busy machine are noisy: compare within one run.

Runs with the test env (`make bench`), Docker engines started by test-services.sh. It creates
its own portal database, target databases, containers, engines and loopback servers, and
removes them at the end (`--keep-engines` leaves the engines it started, for the next run).

    python bench/collect_fleet.py [--rounds 3] [--engines 4] [--containers 200]
        [--databases 20] [--caches 10] [--endpoints 20]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
ADMIN_DSN = os.environ.get("OPSPORTAL_TEST_PG_DSN", "postgres://postgres@127.0.0.1:5432/postgres")
DOCKER_HOST = os.environ.get("OPSPORTAL_TEST_DOCKER_HOST", "unix:///var/run/docker.sock")
TLS_URL = os.environ.get("OPSPORTAL_TEST_DOCKER_TLS_URL", "")
TLS_DIR = Path(os.environ.get("OPSPORTAL_TEST_DOCKER_TLS_DIR", "/nonexistent"))
ENGINES_DIR = Path(os.environ.get("OPSPORTAL_BENCH_ENGINES_DIR", "/tmp/opsportal-bench-engines"))
IMAGE = "opsportal-test/busybox:1"
RUN = f"{os.getpid()}"
PORTAL_DB = f"opsportal_bench_fleet_{RUN}"
REST_SECONDS = 5


def cpu_busy_seconds() -> float:
    """CPU time the whole machine has spent busy since boot (every process: the workers, the
    engines, PostgreSQL, this process), from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def admin(statement: str) -> None:
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(statement)


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


# --- Docker engines --------------------------------------------------------------------------


def _tls() -> dict[str, str]:
    return {
        "tls_ca_cert": (TLS_DIR / "ca.pem").read_text(),
        "tls_client_cert": (TLS_DIR / "client.pem").read_text(),
        "tls_client_key": (TLS_DIR / "client-key.pem").read_text(),
    }


def docker_client(url: str, tls: dict[str, str] | None):
    import docker
    import docker.tls

    config = False
    if tls:
        config = docker.tls.TLSConfig(
            client_cert=(str(TLS_DIR / "client.pem"), str(TLS_DIR / "client-key.pem")),
            ca_cert=str(TLS_DIR / "ca.pem"),
            verify=True,
        )
    client = docker.DockerClient(base_url=url, tls=config, timeout=120, version="1.41")
    # As the portal's adapter does: the engine's own CA, not REQUESTS_CA_BUNDLE.
    client.api.trust_env = False
    return client


def _answers(url: str) -> bool:
    return (
        subprocess.run(["docker", "-H", url, "version"], capture_output=True, timeout=30).returncode
        == 0
    )


def engine_start(n: int) -> tuple[str, bool]:
    """An engine of its own (vfs, no bridge), as test-services.sh starts the test engines;
    reused when one from an earlier run still answers. Returns (url, started here)."""
    folder = ENGINES_DIR / f"engine-{n}"
    url = f"unix://{folder}/docker.sock"
    if _answers(url):
        return url, False
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "docker.sock").unlink(missing_ok=True)
    # A daemon ID of its own: engines on one host otherwise share /etc/docker/key.json, and
    # monitoring takes a second engine with the same ID for a second registration of one
    # daemon (collected once).
    (folder / "daemon.json").write_text(
        json.dumps({"deprecated-key-path": str(folder / "key.json")})
    )
    with open(folder / "dockerd.log", "ab") as log:
        subprocess.Popen(
            ["dockerd", "--storage-driver=vfs", "--iptables=false", "--ip6tables=false",
             "--bridge=none", "--config-file", str(folder / "daemon.json"), "--data-root", str(folder / "data"), "--exec-root",
             str(folder / "exec"), "--pidfile", str(folder / "dockerd.pid"), "-H", url],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + 90
    while not _answers(url):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the engine at {url} did not start; see {folder}/dockerd.log")
        time.sleep(0.5)
    save = subprocess.Popen(["docker", "-H", DOCKER_HOST, "save", IMAGE], stdout=subprocess.PIPE)
    load = subprocess.run(["docker", "-H", url, "load"], stdin=save.stdout, capture_output=True)
    save.stdout.close()
    if save.wait() or load.returncode:
        raise RuntimeError(f"could not copy {IMAGE} to {url}: {load.stderr.decode()}")
    return url, True


def engine_stop(n: int) -> None:
    pidfile = ENGINES_DIR / f"engine-{n}" / "dockerd.pid"
    with contextlib.suppress(OSError, ValueError):
        pid = int(pidfile.read_text())
        os.kill(pid, signal.SIGTERM)
        for _ in range(60):
            os.kill(pid, 0)
            time.sleep(0.5)


def containers_start(url: str, tls, count: int, label: str, offset: int) -> None:
    client = docker_client(url, tls)
    try:
        for i in range(count):
            client.containers.run(
                IMAGE,
                ["sleep", "7200"],
                name=f"{label}-{offset + i}",
                labels={"opsportal-bench": label},
                network_mode="none",
                mem_limit="32m",
                detach=True,
            )
    finally:
        client.close()


def containers_remove(url: str, tls, label: str) -> None:
    with contextlib.suppress(Exception):
        client = docker_client(url, tls)
        for container in client.containers.list(
            all=True, filters={"label": f"opsportal-bench={label}"}
        ):
            with contextlib.suppress(Exception):
                container.remove(force=True)
        client.close()


# --- the run -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3, help="rounds per mode")
    parser.add_argument("--engines", type=int, default=4)
    parser.add_argument("--containers", type=int, default=200)
    parser.add_argument("--databases", type=int, default=20)
    parser.add_argument("--caches", type=int, default=10)
    parser.add_argument("--endpoints", type=int, default=20)
    parser.add_argument("--keep-engines", action="store_true")
    # The test setup's TLS engine reads the same /etc/docker/key.json as its unix-socket
    # engine, so both report one daemon ID and monitoring collects the second registration
    # as a duplicate (reachability only): off by default, the bench's own engines count.
    parser.add_argument("--tls-engine", action="store_true")
    args = parser.parse_args()

    engines: list[tuple[str, str, dict | None]] = [("bench-engine-unix", DOCKER_HOST, None)]
    if args.tls_engine and TLS_URL and (TLS_DIR / "ca.pem").exists():
        engines.append(("bench-engine-tls", TLS_URL, _tls()))
    started_here: list[int] = []
    label = f"opsportal-bench-{uuid.uuid4().hex[:8]}"
    workdir = Path(tempfile.mkdtemp(prefix="opsportal-bench-fleet-"))
    target_dbs = [f"opsportal_bench_fleet_t{n}_{RUN}" for n in range(args.databases)]
    admin(f'CREATE DATABASE "{PORTAL_DB}"')
    base = ADMIN_DSN.rsplit("/", 1)[0]
    os.environ["DATABASE_URL"] = f"{base}/{PORTAL_DB}"
    os.environ["BACKUP_ROOT"] = str(workdir / "backups")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "opsportal.settings")
    servers: list = []
    caches_server = None
    try:
        n = 0
        while len(engines) < args.engines:
            print(f"starting Docker engine {n} under {ENGINES_DIR} ...", flush=True)
            url, fresh = engine_start(n)
            if fresh:
                started_here.append(n)
            engines.append((f"bench-engine-{n}", url, None))
            n += 1
        per_engine = [args.containers // len(engines)] * len(engines)
        per_engine[0] += args.containers - sum(per_engine)
        print(
            f"starting {args.containers} containers on {len(engines)} engines "
            f"and {args.databases} databases ...",
            flush=True,
        )
        with ThreadPoolExecutor(max_workers=len(engines) + 1) as pool:
            futures = [
                pool.submit(containers_start, url, tls, count, label, sum(per_engine[:i]))
                for i, ((_, url, tls), count) in enumerate(zip(engines, per_engine, strict=True))
            ]
            futures.append(
                pool.submit(lambda: [admin(f'CREATE DATABASE "{d}"') for d in target_dbs])
            )
            for future in futures:
                future.result()
        # The caches: databases of a server of the bench's own (the test Redis has 16
        # databases, two of them the suite's cache and broker).
        from tests.realsystems import free_port

        redis_port = free_port()
        caches_server = subprocess.Popen(
            ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
             "--databases", str(max(16, args.caches)), "--save", "", "--appendonly", "no",
             "--dir", str(workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        run(args, engines, target_dbs, servers, workdir, redis_port)
    finally:
        for server_cm in servers:
            with contextlib.suppress(Exception):
                server_cm.__exit__(None, None, None)
        for _, url, tls in engines:
            containers_remove(url, tls, label)
        if not args.keep_engines:
            for n in started_here:
                engine_stop(n)
        with contextlib.suppress(Exception):
            from django.db import connections

            connections.close_all()
        for name in [PORTAL_DB, *target_dbs]:
            with contextlib.suppress(Exception):
                admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if caches_server is not None:
            caches_server.terminate()
            caches_server.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


def run(args, engines, target_dbs, servers, workdir: Path, redis_port: int) -> None:
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.utils import timezone

    from opsportal.celery import app
    from opsportal.monitoring import services
    from opsportal.monitoring.models import CollectionSchedule, LatestValue
    from opsportal.systems.models import DockerEngine, HttpEndpoint, PostgresDatabase, RedisCache
    from tests import realsystems
    from tests.workers import celery_worker, clear_queue, worker_log

    call_command("migrate", verbosity=0)
    for name, url, tls in engines:
        DockerEngine.objects.create(name=name, base_url=url, timeout_seconds=20, **(tls or {}))
    for n, dbname in enumerate(target_dbs):
        PostgresDatabase.objects.create(
            name=f"bench-postgres-{n}", host="127.0.0.1", port=5432, dbname=dbname
        )
    realsystems.wait_for_port(redis_port)
    for n in range(args.caches):
        RedisCache.objects.create(name=f"bench-redis-{n}", host="127.0.0.1", port=redis_port, db=n)
    for n in range(args.endpoints):
        cm = realsystems.http_server()
        server = cm.__enter__()
        servers.append(cm)
        HttpEndpoint.objects.create(name=f"bench-api-{n}", url=server.url + "/health")

    broker_url = settings.CELERY_BROKER_URL
    clear_queue(broker_url)

    # Where a spread round's time goes, per round: the dispatch (leasing and sending, in this
    # process), when the first share started, the workers' busy time (the sum of their
    # shares), the longest share, when the last share ended; from the workers' logs.
    anatomy: dict[str, list[dict[str, float]]] = {"1": [], "2": []}

    def spread_round() -> float:
        CollectionSchedule.objects.update(next_due_at=None)
        wal_before = wal_syncs()
        busy_before = cpu_busy_seconds()
        wall_started = time.time()
        started = time.perf_counter()
        leased_at = timezone.now()
        leased = services.collection_dispatch_due(now=leased_at).leased
        dispatched = time.perf_counter() - started
        deadline = time.monotonic() + 300
        while CollectionSchedule.objects.filter(pk__in=leased, lease_until__isnull=False).exists():
            if time.monotonic() > deadline:
                raise RuntimeError("the round did not finish within 300 s")
            time.sleep(0.01)
        elapsed = time.perf_counter() - started
        done = CollectionSchedule.objects.filter(pk__in=leased, last_finished_at__gte=leased_at)
        assert done.count() == len(leased), "a share was lost"
        # A share's alert evaluation (and the last one's refreshes) run after its systems are
        # stored: the machine's CPU is read once every share the workers took has finished,
        # so no share's tail runs into the next round.
        while any(shares_taken(w) != shares(w) for w in (worker_a, worker_b)):
            if time.monotonic() > deadline:
                raise RuntimeError("the round's shares did not finish within 300 s")
            time.sleep(0.01)
        all_done = time.perf_counter() - started
        busy = cpu_busy_seconds() - busy_before
        every_system_answered()
        spans = [
            span
            for worker in (worker_a, worker_b)
            for span in share_spans(worker)
            if span[0] >= wall_started - 0.01
        ]
        anatomy["2" if len(workers_consuming) == 2 else "1"].append(
            {
                "dispatch": dispatched,
                "first share starts": min(start for start, _ in spans) - wall_started,
                "last share ends": max(end for _, end in spans) - wall_started,
                "busy (sum of shares)": sum(end - start for start, end in spans),
                "longest share": max(end - start for start, end in spans),
                "shares": len(spans),
                "every share done": all_done,
                "CPUs busy (machine)": busy / all_done,
                "WAL syncs": wal_syncs() - wal_before,
            }
        )
        return elapsed

    def in_process_round() -> float:
        CollectionSchedule.objects.update(next_due_at=None)
        started = time.perf_counter()
        services.collection_run_due()
        elapsed = time.perf_counter() - started
        every_system_answered()
        return elapsed

    def every_system_answered() -> None:
        """A round of failures is not the round measured here."""
        failed = CollectionSchedule.objects.filter(last_ok=False).select_related("system")
        if failed.exists():
            raise RuntimeError(
                "systems failed in the round: "
                + "; ".join(f"{s.system.name}: {s.last_error}" for s in failed[:5])
            )

    def shares_taken(worker) -> int:
        return sum(
            1
            for line in worker_log(worker).splitlines()
            if "monitoring.collect_systems[" in line and "received" in line
        )

    def wal_syncs() -> int:
        """The PostgreSQL server's WAL syncs so far (pg_stat_wal: every database's commits)."""
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            return conn.execute("SELECT wal_sync FROM pg_stat_wal").fetchone()[0]

    def shares(worker) -> int:
        return sum(
            1
            for line in worker_log(worker).splitlines()
            if "monitoring.collect_systems[" in line and "succeeded" in line
        )

    succeeded = re.compile(
        r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*Task monitoring\.collect_systems\[[^]]+\] "
        r"succeeded in ([\d.]+)s"
    )

    def share_spans(worker) -> list[tuple[float, float]]:
        """(start, end) wall-clock times of the worker's shares, from its log."""
        spans = []
        for line in worker_log(worker).splitlines():
            if match := succeeded.match(line):
                end = dt.datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()
                spans.append((end - float(match[2]), end))
        return spans

    workers_consuming: set[str] = set()

    def consume(worker, on: bool) -> None:
        (workers_consuming.add if on else workers_consuming.discard)(worker.name)
        command = app.control.add_consumer if on else app.control.cancel_consumer
        replies = command("collect", destination=[worker.name], reply=True, timeout=10)
        if not replies:
            raise RuntimeError(f"worker {worker.name} did not answer the remote control")

    timings: dict[str, list[float]] = {"1": [], "2": [], "in-process": []}
    split: list[tuple[int, int]] = []
    with (
        celery_worker(
            broker_url=broker_url, log_dir=workdir, name_prefix="fleet-a",
            extra_args=("-Q", "collect"),
        ) as worker_a,
        celery_worker(
            broker_url=broker_url, log_dir=workdir, name_prefix="fleet-b",
            extra_args=("-Q", "collect"),
        ) as worker_b,
    ):  # fmt: skip
        workers_consuming.update((worker_a.name, worker_b.name))
        print("warm-up rounds ...", flush=True)
        spread_round()  # schedules, connections, first CPU counters
        in_process_round()
        anatomy["2"].clear()
        # The machine's own load between rounds (the engines and their 200 containers'
        # shims, the kernel's writeback, the loopback servers): CPU no round can use.
        busy_before, rest_started = cpu_busy_seconds(), time.perf_counter()
        time.sleep(REST_SECONDS)
        at_rest = (cpu_busy_seconds() - busy_before) / (time.perf_counter() - rest_started)
        for n in range(args.rounds):
            order = ("1", "2", "in-process") if n % 2 == 0 else ("in-process", "2", "1")
            for mode in order:
                if mode == "in-process":
                    timings[mode].append(in_process_round())
                    continue
                consume(worker_b, on=mode == "2")
                before = (shares(worker_a), shares(worker_b))
                timings[mode].append(spread_round())
                if mode == "2":
                    after = (shares(worker_a), shares(worker_b))
                    split.append((after[0] - before[0], after[1] - before[1]))
                print(f"  round {n + 1}, {mode}: {timings[mode][-1]:.2f} s", flush=True)
            consume(worker_b, on=True)

    systems = CollectionSchedule.objects.count()
    containers = LatestValue.objects.filter(metric="container_running").count()
    one, two = statistics.median(timings["1"]), statistics.median(timings["2"])
    print()
    print(
        f"Collection over a fleet: {len(engines)} Docker engines with {containers} containers, "
        f"{len(target_dbs)} PostgreSQL, {args.caches} Redis, {args.endpoints} HTTP endpoints "
        f"({systems} systems); {os.cpu_count()} CPUs; "
        f"{args.rounds} rounds per mode, alternating"
    )
    print(f"{'measure':<52}{'p50':>9}{'max':>9}{'target':>10}{'p50/target':>12}")
    rows = [
        ("round, 1 worker process (s)", timings["1"], 30.0),
        ("round, 2 worker processes (s)", timings["2"], None),
        ("  baseline: one process, thread pool, no spreading (s)", timings["in-process"], None),
    ]
    for name, values, target in rows:
        ratio = f"{p(values, 0.5) / target:.2f}" if target else "-"
        print(
            f"{name:<52}{p(values, 0.5):>9.2f}{max(values):>9.2f}"
            f"{(f'{target:g}' if target else '-'):>10}{ratio:>12}"
        )
    print(
        f"{'2 workers / 1 worker (medians)':<52}{two / one:>9.2f}{'':>9}{'0.6':>10}{two / one / 0.6:>12.2f}"
    )
    print(f"\nrounds (s): 1 worker {[round(t, 2) for t in timings['1']]}, "
          f"2 workers {[round(t, 2) for t in timings['2']]}, "
          f"in-process {[round(t, 2) for t in timings['in-process']]}")  # fmt: skip
    print(
        f"shares (tasks) taken by worker A / B in the 2-worker rounds: {split}; a share is one "
        f"system, or up to {services.SHARE_SIZE} that answered within {services.QUICK_MS} ms"
    )
    print(
        "\nwhere a spread round's time goes (medians over the rounds; seconds from the dispatch):"
    )
    print(f"{'':<24}" + "".join(f"{key:>22}" for key in anatomy["1"][0]))
    for mode, rounds in anatomy.items():
        medians = [statistics.median(r[key] for r in rounds) for key in rounds[0]]
        print(f"{mode + ' worker(s)':<24}" + "".join(f"{m:>22.3f}" for m in medians))
    cpus = os.cpu_count() or 1
    one_busy = statistics.median(r["CPUs busy (machine)"] for r in anatomy["1"])
    print(
        f"CPUs busy at rest: {at_rest:.2f} of {cpus}. A one-worker round keeps {one_busy:.2f} "
        f"busy, so two workers would take (busy - rest) / ({cpus} - rest) = "
        f"{(one_busy - at_rest) / (cpus - at_rest):.2f}x its time on this machine if the "
        "round's CPU-seconds stayed the same and spread perfectly over what is left (an "
        "estimate: two workers competing for the CPUs mostly need more, not less)."
    )
    slowest = CollectionSchedule.objects.select_related("system").order_by("-last_duration_ms")
    print(
        "slowest systems in the last round: "
        + ", ".join(f"{s.system.name} {s.last_duration_ms:.0f} ms" for s in slowest[:5])
    )


if __name__ == "__main__":
    main()
