"""Verifying a backup: its file's SHA-256 must match what was recorded, and the archive must
read end to end."""

from __future__ import annotations

import zlib
from collections.abc import Iterable

from django.utils import timezone

from backups.models import Backup, BackupFormat, HistoryCheck, Verification
from backups.services._common import _archive_chunks, _Hashing
from backups.services.alerts import _alert_database_admins
from backups.services.anomalies import backup_compare_with_history
from backups.storage import StorageError, storage_for
from opsportal.audit.models import AuditAction, AuditOutcome
from opsportal.audit.services import audit_record
from opsportal.systems.adapters import pg_tools
from opsportal.systems.adapters.errors import AdapterError


def _check_plain(chunks: Iterable[bytes]) -> str:
    head, tail = b"", b""
    for chunk in chunks:
        if len(head) < 4096:
            head += chunk[: 4096 - len(head)]
        tail = (tail + chunk)[-4096:]
    if b"PostgreSQL database dump" not in head:
        raise pg_tools.ToolFailed("It does not start like a pg_dump SQL script.")
    if b"PostgreSQL database dump complete" not in tail:
        raise pg_tools.ToolFailed("It is cut short: pg_dump's closing line is missing.")
    return "SQL script complete (header and closing line present)"


def backup_verify(*, backup: Backup, actor: object | None = None) -> Backup:
    """Re-read the file: its SHA-256 must match what was recorded, and the archive must be
    readable end to end (pg_restore reads every block; a plain script must be complete).
    A backup verified for the first time is then compared with the database's recent backups
    (backups/services/anomalies.py)."""
    storage = storage_for(backup.storage_location)
    problems: list[str] = []
    detail = ""
    try:
        hashing = _Hashing(storage.read_chunks(backup.file_name))
        try:
            if backup.format == BackupFormat.CUSTOM:
                pg_tools.archive_read_through(hashing)
            else:
                detail = _check_plain(_archive_chunks(backup, hashing))
        except (AdapterError, zlib.error, EOFError) as exc:
            problems.append(f"It is not readable: {exc}")
        hashing.drain()
        if hashing.hasher.hexdigest() != backup.sha256 or hashing.size != backup.size_bytes:
            # The checksum outranks the readability message: the file was altered.
            problems.insert(
                0,
                f"Checksum mismatch: the file changed after it was written (recorded sha256 "
                f"{backup.sha256}, {backup.size_bytes} bytes; found "
                f"{hashing.hasher.hexdigest()}, {hashing.size} bytes).",
            )
        if not problems and backup.format == BackupFormat.CUSTOM:
            listing = pg_tools.archive_list(storage.read_chunks(backup.file_name))
            entries = sum(1 for line in listing.splitlines() if line and not line.startswith(";"))
            detail = f"pg_restore --list: {entries} entries; every data block read"
    except (StorageError, AdapterError) as exc:
        problems.append(str(exc))
    backup.verification = Verification.FAILED if problems else Verification.VERIFIED
    backup.verified_at = timezone.now()
    backup.verification_message = " ".join(problems) if problems else f"Checksum matches; {detail}."
    Backup.objects.filter(pk=backup.pk).update(
        verification=backup.verification,
        verified_at=backup.verified_at,
        verification_message=backup.verification_message,
    )
    audit_record(
        action=AuditAction.OPERATION,
        obj=backup,
        actor=actor,
        outcome=AuditOutcome.FAILURE if problems else AuditOutcome.SUCCESS,
        message=f"Verification: {backup.verification_message}",
    )
    if problems:
        _alert_database_admins(
            plan=backup.plan,
            about=backup,
            subject=f"Backup #{backup.pk} of {backup.database} failed verification",
            body=backup.verification_message,
            open_incident=False,
        )
    elif backup.history_check == HistoryCheck.PENDING:
        backup_compare_with_history(backup=backup, actor=actor)
    return backup
