"""Adapter for PostgreSQL's client programs (pg_dump, pg_restore, psql) as streaming
subprocesses.

Dumps and restores never pass through memory whole: output is read in chunks and handed
to the caller, input is fed in chunks. The password reaches the child through a 0600
password file named in the child's environment, never on a command line (where `ps`
would show it). Every failure becomes an AdapterError whose message quotes the tool.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from opsportal.systems.adapters import postgres
from opsportal.systems.adapters.errors import (
    AdapterError,
    OperationFailed,
    TimedOut,
)

if TYPE_CHECKING:
    from opsportal.systems.models import PostgresDatabase

CHUNK_BYTES = 1 << 20
# pg_dump's messages are kept for the record, up to this much.
MAX_MESSAGES_BYTES = 64 * 1024


class ToolFailed(OperationFailed):
    """The tool ran and exited non-zero; `messages` holds what it printed on stderr."""

    def __init__(self, message: str, messages: str = ""):
        super().__init__(message)
        self.messages = messages


@dataclass(frozen=True)
class ToolRun:
    messages: str
    duration_seconds: float


def _passfile_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


@contextlib.contextmanager
def connection_env(
    database: PostgresDatabase, *, dbname: str | None = None, host: str | None = None
) -> Iterator[dict[str, str]]:
    """The child's environment: libpq's PG* variables and, if there is a password, a 0600
    passfile in a private directory that disappears when the block ends."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("PG") and key not in {"DATABASE_URL"}
    }
    env.update(
        PGHOST=host or postgres.resolve_host(database),
        PGPORT=str(database.port),
        PGUSER=database.username,
        PGDATABASE=dbname or database.dbname,
        PGSSLMODE=database.sslmode,
        PGCONNECT_TIMEOUT=str(database.connect_timeout_seconds),
        PGAPPNAME=postgres.APPLICATION_NAME,
    )
    with tempfile.TemporaryDirectory(prefix="opsportal-pg-") as private_dir:
        passfile = os.path.join(private_dir, "pgpass")
        fd = os.open(passfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            if database.password:
                handle.write(
                    f"*:*:*:{_passfile_escape(database.username)}:"
                    f"{_passfile_escape(database.password)}\n"
                )
        env["PGPASSFILE"] = passfile
        yield env


def _translate(
    database: PostgresDatabase, tool: str, returncode: int, messages: str, host: str
) -> AdapterError:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return ToolFailed(
            f"{tool} was killed ({name}) before it finished; nothing was kept.", messages
        )
    lowered = messages.lower()
    if any(
        marker in lowered
        for marker in (
            "password authentication failed",
            "no password supplied",
            "connection refused",
            "could not connect",
            "timeout expired",
            "could not translate host name",
        )
    ):
        error = postgres.translate_error(database, Exception(messages), host)
        error.messages = messages  # type: ignore[attr-defined]
        return error
    first = _significant_line(messages)
    return ToolFailed(f"{tool} failed (exit {returncode}): {first}", messages)


def _significant_line(messages: str) -> str:
    for line in messages.splitlines():
        if "error" in line.lower() or "fatal" in line.lower():
            return line.strip()[:500]
    lines = [line.strip() for line in messages.splitlines() if line.strip()]
    return lines[0][:500] if lines else "no message"


class _StderrCollector(threading.Thread):
    def __init__(self, stream) -> None:
        super().__init__(daemon=True, name="pg-tool-stderr")
        self.stream = stream
        self.buffer = bytearray()

    def run(self) -> None:
        for line in iter(lambda: self.stream.readline(), b""):
            if len(self.buffer) < MAX_MESSAGES_BYTES:
                self.buffer += line

    @property
    def text(self) -> str:
        return self.buffer.decode("utf-8", "replace").strip()


class _Deadline:
    """Kills the child when the time limit passes, whatever it is doing."""

    def __init__(self, process: subprocess.Popen, seconds: float | None) -> None:
        self.expired = False
        self._timer = None
        if seconds:
            self._timer = threading.Timer(seconds, self._kill, args=(process,))
            self._timer.daemon = True
            self._timer.start()

    def _kill(self, process: subprocess.Popen) -> None:
        self.expired = True
        with contextlib.suppress(ProcessLookupError):
            process.kill()

    def cancel(self) -> None:
        if self._timer:
            self._timer.cancel()


def dump_command(*, format: str, compression: int, snapshot: str = "") -> list[str]:
    """pg_dump's arguments (connection details come from the environment)."""
    command = ["pg_dump", "--no-password", f"--compress={int(compression)}"]
    if format == "plain":
        # A plain dump drops what it creates first, so psql can restore it over a database.
        command += ["--format=plain", "--clean", "--if-exists"]
    else:
        command += ["--format=custom"]
    if snapshot:
        command.append(f"--snapshot={snapshot}")
    return command


def dump(
    database: PostgresDatabase,
    *,
    sink: Callable[[bytes], None],
    format: str = "custom",
    compression: int = 6,
    snapshot: str = "",
    time_limit_seconds: float | None = None,
) -> ToolRun:
    """Run pg_dump against the database and hand its output to `sink` chunk by chunk.

    If `sink` raises (disk full), pg_dump is stopped and the exception propagates.
    """
    started = time.monotonic()
    host = postgres.resolve_host(database)
    command = dump_command(format=format, compression=compression, snapshot=snapshot)
    with connection_env(database, host=host) as env:
        try:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
            )
        except FileNotFoundError as exc:
            raise OperationFailed("pg_dump is not installed on the worker.") from exc
        stderr = _StderrCollector(process.stderr)
        stderr.start()
        deadline = _Deadline(process, time_limit_seconds)
        try:
            for chunk in iter(lambda: process.stdout.read(CHUNK_BYTES), b""):
                sink(chunk)
        except BaseException:
            process.kill()
            process.wait()
            raise
        finally:
            deadline.cancel()
            process.stdout.close()
        returncode = process.wait()
        stderr.join(5)
    if deadline.expired:
        raise TimedOut(f"pg_dump of {database.name} ran past its {time_limit_seconds:g} s limit.")
    if returncode != 0:
        raise _translate(database, "pg_dump", returncode, stderr.text, host)
    return ToolRun(messages=stderr.text, duration_seconds=time.monotonic() - started)


def _feed(
    database: PostgresDatabase,
    tool: str,
    command: list[str],
    chunks: Iterable[bytes],
    *,
    env: dict[str, str],
    host: str,
    time_limit_seconds: float | None,
    stdout_sink: Callable[[bytes], None] | None = None,
) -> ToolRun:
    """Run a tool that reads an archive on stdin; feed it chunk by chunk."""
    started = time.monotonic()
    try:
        process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE if stdout_sink else subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
        )
    except FileNotFoundError as exc:
        raise OperationFailed(f"{tool} is not installed on the worker.") from exc
    stderr = _StderrCollector(process.stderr)
    stderr.start()
    reader = None
    if stdout_sink:
        reader = threading.Thread(
            target=lambda: [
                stdout_sink(c) for c in iter(lambda: process.stdout.read(CHUNK_BYTES), b"")
            ],
            daemon=True,
        )
        reader.start()
    deadline = _Deadline(process, time_limit_seconds)
    try:
        for chunk in chunks:
            process.stdin.write(chunk)
    except BrokenPipeError:
        pass  # the tool stopped reading (it failed, or --list needed only the header)
    except BaseException:
        process.kill()
        process.wait()
        raise
    finally:
        with contextlib.suppress(BrokenPipeError):
            process.stdin.close()
        deadline.cancel()
    returncode = process.wait()
    stderr.join(5)
    if reader:
        reader.join(30)
    if deadline.expired:
        raise TimedOut(f"{tool} on {database.name} ran past its {time_limit_seconds:g} s limit.")
    if returncode != 0:
        raise _translate(database, tool, returncode, stderr.text, host)
    return ToolRun(messages=stderr.text, duration_seconds=time.monotonic() - started)


def restore(
    database: PostgresDatabase,
    *,
    chunks: Iterable[bytes],
    format: str = "custom",
    dbname: str | None = None,
    single_transaction: bool = True,
    time_limit_seconds: float | None = None,
) -> ToolRun:
    """Restore an archive streamed in `chunks` into the database (or `dbname` on its server).

    Custom archives go through `pg_restore --clean --if-exists --single-transaction`, plain
    SQL through `psql --single-transaction` with ON_ERROR_STOP: an error rolls everything
    back, so a failed restore leaves the database as it was.
    """
    host = postgres.resolve_host(database)
    if format == "plain":
        command = ["psql", "--no-password", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", "-"]
        tool = "psql"
    else:
        command = ["pg_restore", "--no-password", "--clean", "--if-exists", "--no-owner"]
        command += ["--exit-on-error", "--dbname", dbname or database.dbname]
        tool = "pg_restore"
    if single_transaction:
        command.append("--single-transaction")
    with connection_env(database, dbname=dbname, host=host) as env:
        return _feed(
            database,
            tool,
            command,
            chunks,
            env=env,
            host=host,
            time_limit_seconds=time_limit_seconds,
        )


def archive_list(chunks: Iterable[bytes]) -> str:
    """`pg_restore --list` of a custom archive: its table of contents, proving it parses."""
    listing = bytearray()
    _feed(
        None,  # type: ignore[arg-type]
        "pg_restore --list",
        ["pg_restore", "--list"],
        chunks,
        env=dict(os.environ),
        host="",
        time_limit_seconds=None,
        stdout_sink=listing.extend,
    )
    return listing.decode("utf-8", "replace")


def archive_read_through(chunks: Iterable[bytes]) -> ToolRun:
    """Read a custom archive end to end (every data block decompressed) without a database."""
    return _feed(
        None,  # type: ignore[arg-type]
        "pg_restore",
        ["pg_restore", "--file", os.devnull],
        chunks,
        env=dict(os.environ),
        host="",
        time_limit_seconds=None,
    )


def dump_in_container(
    database: PostgresDatabase,
    *,
    sink: Callable[[bytes], None],
    format: str = "custom",
    compression: int = 6,
    snapshot: str = "",
    time_limit_seconds: float | None = None,
) -> ToolRun:
    """The runbook's `docker exec <container> pg_dump …`: pg_dump runs inside the database's
    own container and connects to the server there; its output streams back over the
    engine's API. The password travels in the exec'd process's environment only."""
    from opsportal.systems.adapters import docker_engine

    if not database.runs_in_container:
        raise OperationFailed(
            f"Database {database.name} has no Docker engine and container configured, so "
            "it cannot be dumped inside its container."
        )
    started = time.monotonic()
    command = dump_command(format=format, compression=compression, snapshot=snapshot)
    command += [
        "--host=127.0.0.1",
        f"--port={database.port}",
        f"--username={database.username}",
        f"--dbname={database.dbname}",
    ]
    environment = {"PGCONNECT_TIMEOUT": str(database.connect_timeout_seconds)}
    if database.password:
        environment["PGPASSWORD"] = database.password
    exit_code, messages = docker_engine.exec_stream(
        database.docker_engine,
        database.container_name,
        command,
        environment=environment,
        stdout_sink=sink,
        stream_timeout_seconds=time_limit_seconds or 3600,
    )
    if exit_code == 126 or exit_code == 127:
        raise ToolFailed(
            f"pg_dump could not be run in container {database.container_name!r} "
            f"(exit {exit_code}): is it installed there? {_significant_line(messages)}",
            messages,
        )
    if exit_code != 0:
        raise _translate(database, "pg_dump (in container)", exit_code, messages, "127.0.0.1")
    return ToolRun(messages=messages, duration_seconds=time.monotonic() - started)
