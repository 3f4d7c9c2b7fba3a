"""Evidence is private from the first byte: directories 0700 and files 0600 when they are
created, not narrowed afterwards (an exported filesystem is written for seconds)."""

import os
import stat
import threading
import time
from pathlib import Path

import pytest

from opsportal.operations.models import Evidence, OperationStatus

pytestmark = pytest.mark.docker

BULK_MB = 200


@pytest.fixture
def open_umask():
    """Umask 0: anything created without an explicit mode would be world-readable, so only
    modes given at creation can pass."""
    previous = os.umask(0)
    yield
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_exported_filesystem_is_0600_while_it_streams(
    run_container, docker_engine, run_operation, settings, tmp_path, open_umask
):
    settings.MEDIA_ROOT = tmp_path / "media"
    container = run_container(
        ["sh", "-c", f"dd if=/dev/zero of=/bulk bs=1M count={BULK_MB} && echo ready; sleep 600"]
    )
    deadline = time.monotonic() + 60
    while b"ready" not in container.logs() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert b"ready" in container.logs()

    # Watch for the export file from another thread while the operation writes it here.
    seen: dict = {}
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            for path in (tmp_path / "media" / "evidence").glob("*/filesystem.tar"):
                try:
                    info = os.stat(path)
                except FileNotFoundError:
                    continue
                seen.update(mode=stat.S_IMODE(info.st_mode), size=info.st_size)
                seen["directory_mode"] = mode(path.parent)
                return

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        operation = run_operation(
            "evidence_preserve",
            docker_engine,
            {"container": container.name, "export_filesystem": True},
        )
    finally:
        stop.set()
        watcher.join(10)
    assert operation.status == OperationStatus.SUCCEEDED, operation.error
    export = Evidence.objects.get(operation=operation, name="filesystem.tar")
    assert export.size_bytes > BULK_MB * 1_048_576
    # Seen part-written (so while streaming), and already private then.
    assert seen and seen["size"] < export.size_bytes, seen
    assert seen["mode"] == 0o600, oct(seen["mode"])
    assert seen["directory_mode"] == 0o700, oct(seen["directory_mode"])

    directory = (Path(settings.MEDIA_ROOT) / export.path).parent
    assert mode(directory) == 0o700
    assert mode(directory.parent) == 0o700  # MEDIA_ROOT/evidence
    items = list(Evidence.objects.filter(operation=operation))
    assert {e.name for e in items} == {"logs.txt", "inspect.json", "diff.json", "filesystem.tar"}
    for item in items:
        assert mode(Path(settings.MEDIA_ROOT) / item.path) == 0o600, item.name
