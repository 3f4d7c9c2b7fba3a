"""Bindings of the embedded broker under concurrent declarations: processes that declare
queues on one fresh exchange at the same moment, as the try-out's producers, workers and beat
do when they start together. kombu's own channel creates the table file empty before it
fills it: another process reading it then died on JSONDecodeError (the clean-clone CI failure
of 2026-11-30), and a truncating open could wipe a binding just written."""

from __future__ import annotations

import multiprocessing
import os
import traceback
from pathlib import Path

from kombu import Connection, Exchange, Queue

from opsportal import embedded_broker

PROCESSES = 8
EXCHANGES = 15


def transport_options(folder: Path) -> dict[str, str]:
    options = {name: str(folder / name) for name in ("queue", "control", "staging", "claimed")}
    for path in options.values():
        os.makedirs(path, exist_ok=True)
    return {
        "data_folder_in": options["queue"],
        "data_folder_out": options["queue"],
        "control_folder": options["control"],
        "staging_folder": options["staging"],
        "claimed_folder": options["claimed"],
    }


def declare_at_once(transport, folder: Path, worker: int, start, errors) -> None:
    """Wait for every process, then bind this worker's queue to each fresh exchange."""
    try:
        with Connection(
            "filesystem://", transport=transport, transport_options=transport_options(folder)
        ) as connection:
            channel = connection.channel()
            for number in range(EXCHANGES):
                start.wait(timeout=20)  # a broken barrier (one died) ends the rest
                exchange = Exchange(f"fresh-{number}", type="direct", channel=channel)
                Queue(f"q{worker}", exchange, routing_key=f"q{worker}", channel=channel).declare()
    except Exception:
        errors.put(traceback.format_exc(limit=3))


def race(transport, folder: Path) -> tuple[list[str], dict[str, set[str]]]:
    context = multiprocessing.get_context("fork")
    start, errors = context.Barrier(PROCESSES), context.Queue()
    processes = [
        context.Process(target=declare_at_once, args=(transport, folder, w, start, errors))
        for w in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(90)
        assert process.exitcode is not None, "a declaring process hung"
    failures = []
    while not errors.empty():
        failures.append(errors.get())
    with Connection(
        "filesystem://", transport=transport, transport_options=transport_options(folder)
    ) as connection:
        channel = connection.channel()
        tables = {
            f"fresh-{n}": {binding.queue for binding in channel.get_table(f"fresh-{n}")}
            for n in range(EXCHANGES)
        }
    return failures, tables


def test_queues_declared_at_once_on_a_fresh_exchange_all_bind_and_none_crashes(tmp_path):
    failures, tables = race(embedded_broker.Transport, tmp_path)
    assert failures == []
    expected = {f"q{w}" for w in range(PROCESSES)}
    assert tables == {f"fresh-{n}": expected for n in range(EXCHANGES)}
    assert not list((tmp_path / "control").glob(".*")), "a staged table was left behind"


def test_a_deleted_queue_leaves_the_table_and_the_others_bound(tmp_path):
    with Connection(
        "filesystem://",
        transport=embedded_broker.Transport,
        transport_options=transport_options(tmp_path),
    ) as connection:
        channel = connection.channel()
        exchange = Exchange("shared", type="direct", channel=channel)
        queues = [Queue(f"q{n}", exchange, routing_key=f"q{n}", channel=channel) for n in range(3)]
        for queue in queues:
            queue.declare()
        queues[1].delete()
        assert {b.queue for b in channel.get_table("shared")} == {"q0", "q2"}
