"""Security runners: isolating a container and preserving its evidence (files written once,
readable by the portal's user only, each with its SHA-256)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.utils import timezone

from opsportal.operations.runners.outcome import Outcome
from opsportal.operations.runners.targets import resolve_container
from opsportal.systems.adapters import docker_engine


def run_container_isolate(target, params, operation) -> Outcome:
    engine, name = resolve_container(target, params)
    result = docker_engine.container_isolate(engine, name, method=params.get("method", "auto"))
    return Outcome(
        f"Isolated {name} on {engine.name} ({result['method']}): "
        + " ".join(result["steps"])
        + f" It is now {result['state']}.",
        result,
    )


def evidence_directory(operation) -> Path:
    # The timestamp keeps a restored or re-created database from reusing a directory.
    stamp = operation.requested_at.strftime("%Y%m%dT%H%M%S%f")
    return Path(settings.MEDIA_ROOT) / "evidence" / f"operation-{operation.pk}-{stamp}"


# Evidence holds a container's environment (its credentials) and possibly its whole
# filesystem: only the portal's own user may read it, from the first byte written. The
# modes are given when a directory or file is created (the umask can only narrow them),
# never set afterwards, so no other local user can open a file while it is being written.
EVIDENCE_DIRECTORY_MODE = 0o700
EVIDENCE_FILE_MODE = 0o600


def evidence_directory_create(operation) -> Path:
    directory = evidence_directory(operation)
    Path(settings.MEDIA_ROOT).mkdir(parents=True, exist_ok=True)
    directory.parent.mkdir(mode=EVIDENCE_DIRECTORY_MODE, exist_ok=True)
    directory.mkdir(mode=EVIDENCE_DIRECTORY_MODE)
    return directory


def evidence_file_create(path: Path) -> BinaryIO:
    """A new evidence file, open for writing, readable by the portal's user only; refuses
    to overwrite a file or follow a link planted at its name."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    return os.fdopen(os.open(path, flags, EVIDENCE_FILE_MODE), "wb")


def run_evidence_preserve(target, params, operation) -> Outcome:
    """Logs, inspect output and `docker diff` (and optionally the exported filesystem),
    each written once with its SHA-256 and recorded as Evidence with who captured it when."""
    from opsportal.operations.models import Evidence

    engine, name = resolve_container(target, params)
    directory = evidence_directory_create(operation)
    source = f"{name} on {engine.name} ({engine.base_url})"

    def store(filename: str, content: bytes, description: str) -> Evidence:
        path = directory / filename
        with evidence_file_create(path) as handle:
            handle.write(content)
        return _record(
            filename, path, len(content), hashlib.sha256(content).hexdigest(), description
        )

    def _record(filename, path, size, digest, description) -> Evidence:
        return Evidence.objects.create(
            operation=operation,
            incident_id=operation.incident_id,
            name=filename,
            description=description,
            path=str(path.relative_to(settings.MEDIA_ROOT)),
            size_bytes=size,
            sha256=digest,
            captured_by=operation.requested_by,
            captured_at=timezone.now(),
            source_system=source,
        )

    items = [
        store(
            "logs.txt",
            docker_engine.container_logs(engine, name, lines=params.get("log_lines")).encode(),
            f"Last {params.get('log_lines')} log lines, with timestamps",
        ),
        store(
            "inspect.json",
            json.dumps(
                docker_engine.container_inspect(engine, name), indent=2, sort_keys=True
            ).encode(),
            "docker inspect (configuration and state)",
        ),
        store(
            "diff.json",
            json.dumps(docker_engine.container_diff(engine, name), indent=2).encode(),
            "docker diff: filesystem changes since the container was created",
        ),
    ]
    if params.get("export_filesystem"):
        path = directory / "filesystem.tar"
        with evidence_file_create(path) as handle:
            size, digest = docker_engine.container_export(engine, name, into=handle)
        items.append(_record("filesystem.tar", path, size, digest, "docker export"))
    lines = [f"Preserved {len(items)} items from {source}:"]
    lines += [f"{e.name}  {e.size_bytes} bytes  sha256 {e.sha256}" for e in items]
    return Outcome(
        "\n".join(lines),
        {"evidence": [{"id": e.pk, "name": e.name, "sha256": e.sha256} for e in items]},
    )
