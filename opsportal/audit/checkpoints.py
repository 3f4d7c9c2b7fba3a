"""Signed checkpoints of the audit chain, kept outside the database.

The keyed chain shows a record was edited or removed in the middle, but not that the newest
records were cut off (what is left is still a valid chain). A checkpoint remembers where the
chain ended (last id, its hash, how many records, when), signed with AUDIT_HMAC_KEY, in a
place the database does not control; `verify_audit` compares against the newest one.

Where checkpoints go is not this layer's business: an app registers a CheckpointStore from
its AppConfig.ready() (backups keeps them in the configuration Git repository).
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
from dataclasses import dataclass, replace
from typing import Protocol

from django.db.models import Count, Max
from django.utils import timezone

from opsportal.audit.chain import sign
from opsportal.audit.models import AuditRecord

FORMAT = "opsportal-audit-checkpoint/1"


@dataclass(frozen=True)
class Checkpoint:
    last_id: int
    head_hash: str
    count: int
    at: dt.datetime
    signature: str = ""

    def signed_document(self) -> dict:
        return {
            "format": FORMAT,
            "last_id": self.last_id,
            "head_hash": self.head_hash,
            "count": self.count,
            "at": self.at.isoformat(),
        }

    def signature_valid(self) -> bool:
        return hmac.compare_digest(self.signature.encode(), sign(self.signed_document()).encode())

    def to_json(self) -> str:
        return json.dumps({**self.signed_document(), "signature": self.signature}, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Checkpoint:
        """Parse a checkpoint file; ValueError if it is not one."""
        try:
            document = json.loads(text)
            if document.get("format") != FORMAT:
                raise ValueError(f"not an audit checkpoint (format {document.get('format')!r})")
            return cls(
                last_id=int(document["last_id"]),
                head_hash=str(document["head_hash"]),
                count=int(document["count"]),
                at=dt.datetime.fromisoformat(document["at"]),
                signature=str(document["signature"]),
            )
        except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not an audit checkpoint ({exc})") from exc


def checkpoint_make() -> Checkpoint:
    """A signed checkpoint of the chain as committed right now."""
    head = AuditRecord.objects.order_by("-id").values("id", "hash").first()
    if head is None:
        last_id, head_hash, count = 0, "", 0
    else:
        last_id, head_hash = head["id"], head["hash"]
        count = AuditRecord.objects.filter(id__lte=last_id).count()
    unsigned = Checkpoint(last_id=last_id, head_hash=head_hash, count=count, at=timezone.now())
    return replace(unsigned, signature=sign(unsigned.signed_document()))


def checkpoint_compare(checkpoint: Checkpoint) -> str | None:
    """What the history lost or changed since `checkpoint`, in words; None if nothing."""
    when = f"the checkpoint of {checkpoint.at:%Y-%m-%d %H:%M:%S %Z}"
    if not checkpoint.signature_valid():
        return (
            f"{when} has a wrong signature: it was not written with this AUDIT_HMAC_KEY "
            "(forged, or from another portal)."
        )
    if checkpoint.last_id == 0:
        return None
    up_to = AuditRecord.objects.filter(id__lte=checkpoint.last_id).aggregate(
        count=Count("id"), newest=Max("id")
    )
    head = AuditRecord.objects.filter(id=checkpoint.last_id).values_list("hash", flat=True)
    if not head:
        newest = up_to["newest"]
        removed = (
            f"records #{newest + 1} to #{checkpoint.last_id}"
            if newest
            else f"every record up to #{checkpoint.last_id}"
        )
        return (
            f"the history was truncated: {when} ends at record #{checkpoint.last_id} with "
            f"{checkpoint.count} records, but only {up_to['count']} of them are left "
            f"({removed} are missing)."
        )
    if head[0] != checkpoint.head_hash:
        return (
            f"record #{checkpoint.last_id} was rewritten: its hash differs from the one "
            f"{when} recorded."
        )
    if up_to["count"] != checkpoint.count:
        return (
            f"records were removed: {when} counted {checkpoint.count} records up to "
            f"#{checkpoint.last_id}, {up_to['count']} are left."
        )
    return None


class CheckpointStore(Protocol):
    """Somewhere outside the portal's database that keeps checkpoints."""

    def describe(self) -> str:
        """Where, in words (e.g. 'the configuration Git repository at /srv/config')."""
        ...

    def write(self, checkpoint: Checkpoint) -> str:
        """Keep `checkpoint` as the newest; return where it went (e.g. a commit id)."""
        ...

    def read_newest(self) -> Checkpoint | None:
        """The newest checkpoint kept, or None if there is none yet."""
        ...


_store: CheckpointStore | None = None


def checkpoint_store_register(store: CheckpointStore) -> None:
    global _store
    _store = store


def checkpoint_store() -> CheckpointStore | None:
    return _store
