"""Re-chain the audit records written before the chain was keyed.

Until now each hash was a plain SHA-256 anyone could recompute; from now on it is an HMAC with
AUDIT_HMAC_KEY (opsportal/audit/chain.py). This migration first checks the old chain as it
stands, then recomputes every record's hash with the key, and appends one record saying so,
including whether the old chain was intact: re-keying vouches only for the history as it was
when the migration ran. Run it with the production AUDIT_HMAC_KEY set.
"""

from django.db import migrations
from django.utils import timezone

from opsportal.audit import chain

BATCH = 1000


def _old_chain_break(AuditRecord) -> str | None:
    expected_prev = chain.GENESIS_HASH
    for record in AuditRecord.objects.order_by("id").iterator(chunk_size=BATCH):
        if record.prev_hash != expected_prev or chain.unkeyed_digest(record) != record.hash:
            return f"the unkeyed chain was already broken at record #{record.pk}"
        expected_prev = record.hash
    return None


def _set_guard(schema_editor, enabled: bool) -> None:
    if schema_editor.connection.vendor == "postgresql":
        verb = "ENABLE" if enabled else "DISABLE"
        schema_editor.execute(
            f"ALTER TABLE audit_auditrecord {verb} TRIGGER audit_record_append_only", params=None
        )


def rechain(apps, schema_editor):
    AuditRecord = apps.get_model("audit", "AuditRecord")
    count = AuditRecord.objects.count()
    if count == 0:
        return
    old_break = _old_chain_break(AuditRecord)
    _set_guard(schema_editor, enabled=False)
    try:
        prev_hash, batch = chain.GENESIS_HASH, []
        for record in AuditRecord.objects.order_by("id").iterator(chunk_size=BATCH):
            record.prev_hash = prev_hash
            record.hash = chain.record_digest(record)
            prev_hash = record.hash
            batch.append(record)
            if len(batch) >= BATCH:
                AuditRecord.objects.bulk_update(batch, ["prev_hash", "hash"])
                batch = []
        AuditRecord.objects.bulk_update(batch, ["prev_hash", "hash"])
    finally:
        _set_guard(schema_editor, enabled=True)
    note = AuditRecord(
        at=timezone.now(),
        actor_name="",
        source="system",
        action="operation",
        object_type="audit.auditrecord",
        object_repr="audit chain",
        changes={},
        outcome="success" if old_break is None else "failure",
        message=(
            f"Audit chain keyed with AUDIT_HMAC_KEY: {count} earlier records re-chained by "
            "migration audit.0004. "
            + (
                "Their unkeyed chain verified intact before re-keying."
                if old_break is None
                else f"Before re-keying, {old_break}: the re-keyed chain vouches only for "
                "the history as it stood at the migration."
            )
        ),
        prev_hash=prev_hash,
    )
    note.hash = chain.record_digest(note)
    note.save(force_insert=True)
    print(f"\n  {note.message}")  # noqa: T201 (shown by migrate, on purpose)


class Migration(migrations.Migration):
    dependencies = [("audit", "0003_refuse_truncate")]
    # Re-keyed records cannot be turned back into unkeyed ones meaningfully; going back
    # leaves them keyed (verify_audit of the older code would then report them).
    operations = [migrations.RunPython(rechain, migrations.RunPython.noop)]
