"""Real systems for the tests to operate on, started for the test session.

Nothing here imitates a system: PostgreSQL clusters, Redis servers, HTTP servers and
containers are real processes on this machine (or on the test Docker engine).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg
from psycopg import sql

PG_BIN = Path(
    subprocess.run(
        ["pg_config", "--bindir"], capture_output=True, text=True, check=False
    ).stdout.strip()
    or "/usr/lib/postgresql/15/bin"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def _as_postgres_user(command: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


@contextlib.contextmanager
def password_postgres(password: str) -> Iterator[int]:
    """A throw-away PostgreSQL cluster that demands a password (scram-sha-256)."""
    root = Path(tempfile.mkdtemp(prefix="opsportal-pg-"))
    data, pwfile = root / "data", root / "pw"
    pwfile.write_text(password + "\n")
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(pwfile, "postgres")
    port = free_port()
    subprocess.run(
        _as_postgres_user(
            [
                str(PG_BIN / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=scram-sha-256",
                f"--pwfile={pwfile}",
                "-E",
                "UTF8",
            ]
        ),
        check=True,
        capture_output=True,
    )
    subprocess.run(
        _as_postgres_user(
            [
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(root / "log"),
                "-o",
                f"-p {port} -k {root} -c listen_addresses=127.0.0.1",
                "-w",
                "start",
            ]
        ),
        check=True,
        capture_output=True,
    )
    try:
        yield port
    finally:
        subprocess.run(
            _as_postgres_user([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
            check=False,
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def password_redis(password: str) -> Iterator[int]:
    """A throw-away Redis server with requirepass."""
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="opsportal-redis-")
    process = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--requirepass",
            password,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        yield port
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


class _Handler(BaseHTTPRequestHandler):
    server: HttpServer

    def do_GET(self) -> None:
        behaviour = self.server.behaviour
        self.server.requests.append((self.path, dict(self.headers)))
        if behaviour.delay_seconds:
            time.sleep(behaviour.delay_seconds)
        self.send_response(behaviour.status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"ok": true}')

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        self.server.requests.append((self.path, dict(self.headers), body))
        self.send_response(self.server.behaviour.status)
        self.end_headers()

    do_HEAD = do_GET

    def log_message(self, *args) -> None:
        pass


class Behaviour:
    def __init__(self) -> None:
        self.status = 200
        self.delay_seconds = 0.0


class HttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        pass  # a client that gave up on a slow answer is what some tests are about

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.behaviour = Behaviour()
        self.requests: list = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@contextlib.contextmanager
def http_server() -> Iterator[HttpServer]:
    """A real HTTP server on loopback whose status and latency the test can change."""
    server = HttpServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def silent_listener() -> Iterator[int]:
    """A port that accepts connections and never answers: a hung system."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


class ConnectionCounter:
    """A port that accepts TCP connections, counts them and closes them at once: proof of
    whether anything tried to reach a system registered at this address."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.2)
        self._lock = threading.Lock()
        self._count = 0
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return self._sock.getsockname()[1]

    @property
    def connections(self) -> int:
        with self._lock:
            return self._count

    def _serve(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._count += 1
            conn.close()

    def close(self) -> None:
        self._stopped.set()
        self._thread.join(5)
        self._sock.close()


@contextlib.contextmanager
def counting_listener() -> Iterator[ConnectionCounter]:
    counter = ConnectionCounter()
    try:
        yield counter
    finally:
        counter.close()


class RecordingListener:
    """What clients sent to a port that never answers."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._lock = threading.Lock()
        self._received: list[bytes] = []
        self._closing = False
        self._connections: list[socket.socket] = []

    @property
    def port(self) -> int:
        return self._sock.getsockname()[1]

    @property
    def received(self) -> bytes:
        with self._lock:
            return b"".join(self._received)

    def wait_for_bytes(self, timeout: float = 10.0) -> bytes:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.received:
                return self.received
            time.sleep(0.02)
        raise TimeoutError(f"nothing was sent to 127.0.0.1:{self.port} within {timeout} s")

    def _serve(self) -> None:
        while not self._closing:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self._connections.append(conn)
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := conn.recv(65536):
                with self._lock:
                    self._received.append(chunk)

    def close(self) -> None:
        self._closing = True
        for conn in self._connections:
            with contextlib.suppress(OSError):
                conn.close()
        self._sock.close()


@contextlib.contextmanager
def recording_listener() -> Iterator[RecordingListener]:
    """A port that accepts connections, records every byte clients send, never answers:
    a server someone pointed a registered system at, to see what the portal sends."""
    listener = RecordingListener()
    thread = threading.Thread(target=listener._serve, daemon=True)
    thread.start()
    try:
        yield listener
    finally:
        listener.close()


class PostgresPasswordCatcher:
    """A server that speaks just enough of PostgreSQL's protocol to ask for the password
    in clear text (as a server someone controls can), and keeps what it is given."""

    SSL_REQUEST, GSSENC_REQUEST = 80877103, 80877104

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.startups: list[bytes] = []
        self.passwords: list[bytes] = []
        self.received = bytearray()

    @property
    def port(self) -> int:
        return self._sock.getsockname()[1]

    def _recv_exactly(self, conn: socket.socket, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = conn.recv(size - len(data))
            if not chunk:
                raise ConnectionError("client closed")
            data += chunk
            self.received += chunk
        return data

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with conn, contextlib.suppress(OSError, ConnectionError):
                conn.settimeout(10)
                while True:
                    length = int.from_bytes(self._recv_exactly(conn, 4), "big")
                    body = self._recv_exactly(conn, length - 4)
                    code = int.from_bytes(body[:4], "big")
                    if code in (self.SSL_REQUEST, self.GSSENC_REQUEST):
                        conn.sendall(b"N")  # no encryption: go on in clear
                        continue
                    self.startups.append(body)
                    break
                # AuthenticationCleartextPassword
                conn.sendall(b"R" + (8).to_bytes(4, "big") + (3).to_bytes(4, "big"))
                kind = self._recv_exactly(conn, 1)
                length = int.from_bytes(self._recv_exactly(conn, 4), "big")
                body = self._recv_exactly(conn, length - 4)
                if kind == b"p":
                    self.passwords.append(body.rstrip(b"\0"))
                error = b"SFATAL\0C28P01\0Mpassword authentication failed\0\0"
                conn.sendall(b"E" + (len(error) + 4).to_bytes(4, "big") + error)


@contextlib.contextmanager
def postgres_password_catcher() -> Iterator[PostgresPasswordCatcher]:
    catcher = PostgresPasswordCatcher()
    thread = threading.Thread(target=catcher._serve, daemon=True)
    thread.start()
    try:
        yield catcher
    finally:
        catcher._sock.close()


@contextlib.contextmanager
def limited_postgres(
    *,
    superuser_password: str,
    app_user: str,
    app_password: str,
    max_connections: int = 20,
    superuser_reserved_connections: int = 3,
) -> Iterator[LimitedPostgres]:
    """A throw-away PostgreSQL server with few connection slots and an application role
    owning database "app", as in the runbook's "Too many connections": over TCP every role
    needs its password (scram-sha-256)."""
    root = Path(tempfile.mkdtemp(prefix="opsportal-pg-limited-"))
    data, pwfile = root / "data", root / "pw"
    pwfile.write_text(superuser_password + "\n")
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(pwfile, "postgres")
    port = free_port()
    subprocess.run(
        _as_postgres_user(
            [str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=scram-sha-256",
             f"--pwfile={pwfile}", "-E", "UTF8"]
        ),
        check=True,
        capture_output=True,
    )  # fmt: skip
    subprocess.run(
        _as_postgres_user(
            [str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-o",
             f"-p {port} -k {root} -c listen_addresses=127.0.0.1"
             f" -c max_connections={max_connections}"
             f" -c superuser_reserved_connections={superuser_reserved_connections}",
             "-w", "start"]
        ),
        check=True,
        capture_output=True,
    )  # fmt: skip
    server = LimitedPostgres(
        port=port,
        superuser_password=superuser_password,
        app_user=app_user,
        app_password=app_password,
        max_connections=max_connections,
        superuser_reserved_connections=superuser_reserved_connections,
    )
    try:
        with server.connect_as_superuser() as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(app_user), sql.Literal(app_password)
                )
            )
            conn.execute(sql.SQL("CREATE DATABASE app OWNER {}").format(sql.Identifier(app_user)))
        yield server
    finally:
        subprocess.run(
            _as_postgres_user([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
            check=False,
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


class LimitedPostgres:
    """A running limited_postgres server and ways to use up its connection slots."""

    dbname = "app"

    def __init__(self, **details) -> None:
        self.__dict__.update(details)
        self.held: list[psycopg.Connection] = []

    @property
    def usable_by_app(self) -> int:
        return self.max_connections - self.superuser_reserved_connections

    def connect_as_superuser(self, dbname: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            dbname=dbname,
            user="postgres",
            password=self.superuser_password,
            autocommit=True,
            connect_timeout=5,
        )

    def connect_as_app(self, application_name: str = "app-probe") -> psycopg.Connection:
        return psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            dbname=self.dbname,
            user=self.app_user,
            password=self.app_password,
            autocommit=True,
            connect_timeout=5,
            application_name=application_name,
        )

    def exhaust(self, count: int, application_name: str = "leaky-app") -> list[psycopg.Connection]:
        """`count` idle connections of the application role, held until release()."""
        opened = [self.connect_as_app(application_name) for _ in range(count)]
        for conn in opened:
            conn.execute("SELECT 1")
        self.held.extend(opened)
        return opened

    def release(self) -> None:
        for conn in self.held:
            with contextlib.suppress(Exception):
                conn.close()
        self.held.clear()


class SmtpServer:
    """What a real SMTP server (aiosmtpd) on loopback was sent: each message as
    {"from", "to", "data"}; nothing is relayed."""

    def __init__(self) -> None:
        self.messages: list[dict] = []
        self.port = free_port()

    async def handle_DATA(self, server, session, envelope) -> str:
        self.messages.append(
            {
                "from": envelope.mail_from,
                "to": list(envelope.rcpt_tos),
                "data": (envelope.original_content or envelope.content).decode(errors="replace"),
            }
        )
        return "250 Message accepted for delivery"


@contextlib.contextmanager
def smtp_server() -> Iterator[SmtpServer]:
    """A real SMTP server on loopback that keeps what it receives (server.messages)."""
    from aiosmtpd.controller import Controller

    server = SmtpServer()
    controller = Controller(server, hostname="127.0.0.1", port=server.port)
    controller.start()
    try:
        yield server
    finally:
        controller.stop()
