"""Where backup files live. A small interface so an object store can be added beside the
local directory: write under a temporary name and publish only on success, read back in
chunks, delete.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from django.conf import settings

CHUNK_BYTES = 1 << 20


class StorageError(Exception):
    """Writing or reading a backup file failed; the message is fit for an operator."""


class BackupStorage(Protocol):
    def describe(self) -> str: ...

    def writer(self, key: str) -> contextlib.AbstractContextManager[BinaryIO]: ...

    def discard_partial(self, key: str) -> bool: ...

    def read_chunks(self, key: str) -> Iterator[bytes]: ...

    def exists(self, key: str) -> bool: ...

    def size(self, key: str) -> int: ...

    def delete(self, key: str) -> bool: ...


class LocalDirectoryStorage:
    """Backups as files under one directory (the default: BACKUP_ROOT)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def describe(self) -> str:
        return str(self.root)

    def path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise StorageError(f"Backup file name {key!r} points outside {self.root}.")
        return path

    def partial_path(self, key: str) -> Path:
        final = self.path(key)
        # A dot-name with .partial is never mistaken for a finished backup.
        return final.with_name(f".{final.name}.partial")

    @contextlib.contextmanager
    def writer(self, key: str) -> Iterator[BinaryIO]:
        final, partial = self.path(key), self.partial_path(key)
        try:
            final.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            handle = open(partial, "xb")  # noqa: SIM115 (closed below on every path)
        except OSError as exc:
            raise StorageError(
                f"Cannot create a backup file in {final.parent}: {exc.strerror}."
            ) from exc
        try:
            os.chmod(partial, 0o600)
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
            os.replace(partial, final)
            directory = os.open(final.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except BaseException as exc:
            handle.close()
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
            if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
                raise StorageError(
                    f"No space left on the device holding {self.root}; the partial file was "
                    "removed."
                ) from exc
            if isinstance(exc, OSError) and not isinstance(exc, StorageError):
                raise StorageError(f"Writing {final} failed: {exc.strerror or exc}.") from exc
            raise

    def discard_partial(self, key: str) -> bool:
        try:
            self.partial_path(key).unlink()
        except FileNotFoundError:
            return False
        return True

    def read_chunks(self, key: str) -> Iterator[bytes]:
        try:
            handle = open(self.path(key), "rb")  # noqa: SIM115 (closed in finally)
        except FileNotFoundError as exc:
            raise StorageError(f"The backup file {self.path(key)} is missing.") from exc
        try:
            yield from iter(lambda: handle.read(CHUNK_BYTES), b"")
        finally:
            handle.close()

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def size(self, key: str) -> int:
        return self.path(key).stat().st_size

    def delete(self, key: str) -> bool:
        try:
            self.path(key).unlink()
        except FileNotFoundError:
            return False
        return True


def storage_for(location: str) -> BackupStorage:
    """The storage a plan's location names: a directory path or file:// URL, or empty for
    BACKUP_ROOT."""
    if not location:
        return LocalDirectoryStorage(settings.BACKUP_ROOT)
    if location.startswith("file://"):
        return LocalDirectoryStorage(Path(location.removeprefix("file://")))
    if "://" in location:
        raise StorageError(
            f"Storage {location!r} is not supported yet; use a local directory or file:// URL."
        )
    return LocalDirectoryStorage(Path(location))
