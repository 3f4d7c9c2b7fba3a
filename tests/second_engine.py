"""A second, private Docker engine that a test may stop: dockerd started the way
deploy/dev/test-services.sh starts the test engines (vfs, no bridge, no iptables), with the
test images copied from the main test engine. Its data root is kept between runs (keyed by
the test database's name, so parallel checkouts do not share it) so the images are copied
once; the daemon itself lives only as long as the fixture."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from django.conf import settings

from tests import realsystems

START_SECONDS = 30
KEEP = "opsportal-test.keep-port"
IMAGES = ("opsportal-test/busybox:1", "opsportal-test/postgres:15")


class SecondEngine:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.socket = root / "d.sock"
        self.url = f"unix://{self.socket}"
        self.process: subprocess.Popen | None = None
        self.client: docker.DockerClient | None = None

    def start(self) -> None:
        self.socket.unlink(missing_ok=True)
        log = open(self.root / "dockerd.log", "ab")  # noqa: SIM115 - kept open while it runs
        self.process = subprocess.Popen(
            [
                shutil.which("dockerd") or "dockerd",
                "--storage-driver=vfs",
                "--iptables=false",
                "--ip6tables=false",
                "--bridge=none",
                "--shutdown-timeout=2",
                f"--data-root={self.root / 'data'}",
                f"--exec-root={self.root / 'x'}",
                f"--pidfile={self.root / 'dockerd.pid'}",
                f"--host={self.url}",
            ],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + START_SECONDS
        while True:
            # The daemon answering is the event awaited; it has no other signal to wait on.
            try:
                # Removing a container copies nothing but deletes its whole root fs (vfs).
                client = docker.DockerClient(base_url=self.url, timeout=60, max_pool_size=16)
                client.ping()
                self.client = client
                return
            except Exception:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    tail = (self.root / "dockerd.log").read_bytes()[-2000:].decode(errors="replace")
                    self.stop()
                    pytest.fail(f"the second Docker engine did not start:\n{tail}")
                time.sleep(0.1)

    def stop(self, timeout: float = 30) -> None:
        """Stop the daemon (it stops its containers first) and wait until it has exited."""
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self.process = None

    def copy_images(self, main: docker.DockerClient) -> None:
        for name in IMAGES:
            try:
                self.client.images.get(name)
                continue
            except docker.errors.ImageNotFound:
                pass
            with tempfile.TemporaryFile(dir=self.root) as tar:
                for chunk in main.images.get(name).save(named=True):
                    tar.write(chunk)
                tar.seek(0)
                self.client.images.load(tar)

    def remove_containers(self) -> None:
        """Remove every container but those labelled KEEP (a database container is kept
        between runs: creating one on vfs copies its whole image, ten seconds on a busy
        machine)."""
        for container in self.client.containers.list(all=True, ignore_removed=True):
            if KEEP in container.labels:
                continue
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)

    def kept_container(self, name: str, make: Callable[[int], dict]) -> tuple[Any, int]:
        """The container `name` kept from an earlier run, started, and the port it listens on
        (host network); made anew from `make(port)` (the arguments of containers.create) on a
        free port when missing, or when its port is taken by something else now."""
        container = None
        with contextlib.suppress(docker.errors.NotFound):
            container = self.client.containers.get(name)
        if container is not None:
            port = int(container.labels.get(KEEP, "0"))
            if not port or (container.status != "running" and not _port_free(port)):
                container.remove(force=True)
                container = None
        if container is None:
            port = realsystems.free_port()
            container = self.client.containers.create(
                name=name, labels={KEEP: str(port)}, network_mode="host", **make(port)
            )
        container.start()
        return container, port


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@contextlib.contextmanager
def second_engine(main: docker.DockerClient) -> Iterator[SecondEngine]:
    # A short path: the daemon's sockets under it must fit a unix socket name.
    key = settings.DATABASES["default"]["NAME"].rsplit("_", 1)[-1][:16]
    root = Path(tempfile.gettempdir()) / f"op2e-{key}"
    root.mkdir(exist_ok=True)
    with open(root / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        engine = SecondEngine(root)
        engine.start()
        try:
            engine.remove_containers()  # left by a run that was killed
            engine.copy_images(main)
            yield engine
        finally:
            try:
                # A test that stopped the engine leaves its stopped containers to the next run.
                if engine.process is not None:
                    engine.remove_containers()
            finally:
                engine.stop()
