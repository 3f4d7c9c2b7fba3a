"""Preview before acting, against the real PostgreSQL, Redis and Docker engine: what a
changing operation would touch is read live, the operation acts on what was seen, and what
differed (a connection opened after the preview, keys added, a container whose state
changed) is said in its output."""

from __future__ import annotations

import contextlib
import threading
import uuid

import psycopg
import pytest
import redis

from opsportal.operations.models import OperationStatus
from opsportal.operations.previews import (
    operation_preview,
    preview_from_token,
    preview_matches,
    preview_token,
)
from opsportal.operations.services import OperationRefused, operation_request
from opsportal.operations.tasks import execute_operation
from opsportal.systems.models import PostgresDatabase

pytestmark = pytest.mark.django_db


@contextlib.contextmanager
def idle_sessions(dsn: str, application: str, count: int):
    connections = [
        psycopg.connect(dsn, application_name=application, autocommit=True) for _ in range(count)
    ]
    try:
        yield connections
    finally:
        for conn in connections:
            conn.close()


def backend_alive(dsn: str, pid: int) -> bool:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return bool(conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone())


def request_and_run(kind, target, params, actor, preview, reason="test"):
    operation = operation_request(
        kind=kind, target=target, params=params, actor=actor, reason=reason, preview=preview
    )
    execute_operation.apply(args=[operation.pk])
    operation.refresh_from_db()
    return operation


def test_terminate_idle_ends_only_the_connections_seen_and_names_the_newcomer(
    postgres_target, target_database_dsn, operator
):
    application = f"leaky-{uuid.uuid4().hex[:6]}"
    params = {"application_name": application, "idle_seconds": 0, "state": "any", "user": ""}
    with idle_sessions(target_database_dsn, application, 3) as seen:
        seen_pids = {conn.info.backend_pid for conn in seen}
        preview = operation_preview(kind="db_terminate_idle", target=postgres_target, params=params)
        assert not preview["failed"], preview["failed"]
        assert {row["pid"] for row in preview["rows"]} == seen_pids
        assert preview["total"] == 3
        assert {row["application"] for row in preview["rows"]} == {application}
        assert preview["columns"] == [
            "pid",
            "user",
            "application",
            "state",
            "idle_seconds",
            "client",
        ]
        assert preview["summary"].startswith("3 connections of test-postgres would be terminated")
        # One the person saw ends by itself; another one opens after the preview.
        gone = seen[0]
        gone_pid = gone.info.backend_pid
        gone.close()
        with idle_sessions(target_database_dsn, application, 1) as (newcomer,):
            operation = request_and_run(
                "db_terminate_idle", postgres_target, params, operator, preview
            )
            assert operation.status == OperationStatus.SUCCEEDED, operation.error
            new_pid = newcomer.info.backend_pid
            assert backend_alive(target_database_dsn, new_pid)
            assert newcomer.execute("SELECT 1").fetchone() == (1,)
        for pid in seen_pids - {gone_pid}:
            assert not backend_alive(target_database_dsn, pid)
    assert {row["pid"] for row in operation.result["terminated"]} == seen_pids - {gone_pid}
    assert operation.result["not_in_preview"] == [new_pid]
    assert operation.preview["seen"] and operation.preview["total"] == 3
    assert f"1 not in the preview you confirmed, so not terminated: pids {new_pid}." in (
        operation.output
    )
    assert f"1 you saw had ended or no longer matched: pids {gone_pid}." in operation.output
    assert operation.output.startswith(f"Terminated 2 connections of application {application!r}")


def test_a_password_in_a_previewed_statement_is_masked(postgres_target, target_database_dsn):
    role = f"preview_canary_{uuid.uuid4().hex[:8]}"
    secret = f"CANARY-{uuid.uuid4().hex}"
    with psycopg.connect(target_database_dsn, autocommit=True) as conn:
        # The session's last statement carries the password; it is idle now.
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{secret}'")
        try:
            params = {"pids": [conn.info.backend_pid]}
            for kind in ("db_cancel_queries", "db_terminate_queries"):
                preview = operation_preview(kind=kind, target=postgres_target, params=params)
                (row,) = preview["rows"]
                assert row["query"].startswith(f"CREATE ROLE {role} LOGIN PASSWORD ********")
                assert secret not in repr(preview)
        finally:
            conn.execute(f"DROP ROLE {role}")


def test_cancel_queries_stops_the_statement_seen_not_one_started_afterwards(
    postgres_target, target_database_dsn, operator
):
    application = f"slow-{uuid.uuid4().hex[:6]}"
    errors: list[str] = []

    def sleeper(conn):
        try:
            conn.execute("SELECT pg_sleep(30)")
        except psycopg.errors.QueryCanceled:
            errors.append("cancelled")

    def running(conn) -> None:
        with psycopg.connect(target_database_dsn, autocommit=True) as watcher:
            for _ in range(200):
                row = watcher.execute(
                    "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND state = 'active'"
                    " AND pg_sleep(0.05) IS NOT NULL",
                    [conn.info.backend_pid],
                ).fetchone()
                if row:
                    return
        raise AssertionError("the statement never started")

    with idle_sessions(target_database_dsn, application, 2) as (first, second):
        threads = [threading.Thread(target=sleeper, args=(first,))]
        threads[0].start()
        running(first)
        params = {"pids": [first.info.backend_pid, second.info.backend_pid]}
        preview = operation_preview(kind="db_cancel_queries", target=postgres_target, params=params)
        # Named backends are listed whatever they do; the second one is idle for now.
        assert {row["pid"] for row in preview["rows"]} == set(params["pids"])
        seen = {row["pid"]: row for row in preview["rows"]}
        assert "pg_sleep(30)" in seen[first.info.backend_pid]["query"]
        assert seen[first.info.backend_pid]["state"] == "active"
        assert seen[second.info.backend_pid]["state"] == "idle"
        threads.append(threading.Thread(target=sleeper, args=(second,)))
        threads[1].start()
        running(second)
        operation = request_and_run("db_cancel_queries", postgres_target, params, operator, preview)
        assert operation.status == OperationStatus.SUCCEEDED, operation.error
        threads[0].join(10)
        assert errors == ["cancelled"]
        assert threads[1].is_alive()  # the statement started after the preview still runs
        assert [row["pid"] for row in operation.result["signalled"]] == [first.info.backend_pid]
        assert f"so not cancelled: pids {second.info.backend_pid}" in operation.output
        second.cancel_safe()
        threads[1].join(10)


def test_a_cache_pattern_is_counted_with_scan_and_the_difference_is_said(redis_target, operator):
    client = redis.Redis(host=redis_target.host, port=redis_target.port, db=redis_target.db)
    client.mset({f"sess:{n}": "x" for n in range(300)})
    client.mset({f"other:{n}": "x" for n in range(50)})
    preview = operation_preview(
        kind="cache_clear", target=redis_target, params={"pattern": "sess:*"}
    )
    assert preview["count"] == 300 and preview["complete"]
    assert preview["summary"] == (
        f"300 keys match 'sess:*' in db {redis_target.db} of test-redis (350 keys) and would "
        "be removed."
    )
    assert all(row["example"].startswith("sess:") for row in preview["rows"])
    client.mset({f"sess:late-{n}": "x" for n in range(7)})
    operation = request_and_run(
        "cache_clear", redis_target, {"pattern": "sess:*"}, operator, preview
    )
    assert operation.status == OperationStatus.SUCCEEDED, operation.error
    assert "The preview counted 300 matching keys; 307 were removed (more: keys changed" in (
        operation.output
    )
    assert client.dbsize() == 50
    client.close()


def test_a_count_that_runs_out_of_time_is_a_lower_bound(redis_target):
    from opsportal.systems.adapters import redis_cache

    client = redis.Redis(host=redis_target.host, port=redis_target.port, db=redis_target.db)
    client.mset({f"k:{n}": "x" for n in range(20_000)})
    counted = redis_cache.cache_count_matching(
        redis_target, pattern="k:*", max_seconds=0, scan_count=1000
    )
    assert not counted.complete and 0 < counted.matched < 20_000
    assert counted.keys_in_database == 20_000
    # Extrapolated from the keys walked: every key matches here, so all of them.
    assert counted.estimate == round(counted.matched * 20_000 / counted.scanned)
    whole = redis_cache.cache_count_matching(redis_target, pattern="k:*")
    assert whole.complete and whole.matched == 20_000
    client.close()


def test_a_container_preview_shows_its_state_and_the_run_says_it_changed(
    docker_engine, run_container, operator
):
    container = run_container(["sleep", "300"])
    params = {"container": container.name, "timeout_seconds": 1}
    preview = operation_preview(kind="container_restart", target=docker_engine, params=params)
    assert not preview["failed"], preview["failed"]
    (row,) = preview["rows"]
    assert row["name"] == container.name and row["state"] == "running"
    assert row["id"] == container.id[:12]
    assert preview["summary"] == (
        f"Container {container.name} ({container.id[:12]}) on test-engine is running now."
    )
    container.stop(timeout=1)
    operation = request_and_run("container_restart", docker_engine, params, operator, preview)
    assert operation.status == OperationStatus.SUCCEEDED, operation.error
    assert (
        f"{container.name} was running in the preview and exited just before acting."
        in operation.output
    )
    assert operation.result["preview_differences"]


def test_a_container_recreated_since_the_preview_is_not_acted_on(
    docker_engine, run_container, operator
):
    container = run_container(["sleep", "300"])
    params = {"container": container.name, "timeout_seconds": 1}
    preview = operation_preview(kind="container_stop", target=docker_engine, params=params)
    assert preview["rows"][0]["id"] == container.id[:12]
    # A deploy replaces it under the same name between the preview and the confirmation.
    container.remove(force=True)
    successor = run_container(["sleep", "300"], name=container.name)
    operation = request_and_run("container_stop", docker_engine, params, operator, preview)
    assert operation.status == OperationStatus.FAILED
    assert "is another container than in the preview you confirmed" in operation.error
    assert f"id {container.id[:12]} then, {successor.id[:12]} now" in operation.error
    successor.reload()
    assert successor.status == "running"  # the one nobody saw was left alone


def test_an_unreachable_system_fails_the_preview_and_then_needs_a_reason(operator):
    closed = PostgresDatabase.objects.create(
        name="gone-db",
        host="127.0.0.1",
        port=1,
        dbname="app",
        username="app",
        connect_timeout_seconds=2,
    )
    preview = operation_preview(
        kind="db_terminate_idle", target=closed, params={"idle_seconds": 0, "state": "any"}
    )
    assert "gone-db" in preview["failed"] and "not reachable" in preview["failed"]
    assert preview["rows"] == []
    with pytest.raises(
        OperationRefused,
        match=r"The preview failed \(.*\), so nobody has seen what this will do: give a reason",
    ):
        operation_request(
            kind="db_terminate_idle",
            target=closed,
            params={},
            actor=operator,
            reason=" ",
            preview=preview,
        )
    operation = operation_request(
        kind="db_terminate_idle",
        target=closed,
        params={},
        actor=operator,
        reason="the pool is stuck, the database may be back",
        preview=preview,
    )
    assert operation.preview["failed"] == preview["failed"]


def test_a_preview_token_is_bound_to_its_person_kind_system_and_parameters(
    redis_target, operator, superuser
):
    preview = operation_preview(kind="cache_clear", target=redis_target, params={"pattern": "a*"})
    token = preview_token(preview=preview, actor=operator)
    assert preview_from_token(token=token, actor=operator) == preview
    assert preview_from_token(token=token, actor=superuser) is None
    assert preview_from_token(token=token[:-2] + "xx", actor=operator) is None
    assert preview_matches(
        preview=preview, kind="cache_clear", target=redis_target, params={"pattern": "a*"}
    )
    assert not preview_matches(
        preview=preview, kind="cache_clear", target=redis_target, params={"pattern": "b*"}
    )
