"""The audit history's hash chain: each record's hash is an HMAC (keyed with AUDIT_HMAC_KEY,
which lives in the environment, never in the database) over its contents and the previous
record's hash. Without the key nobody can recompute the chain after editing or removing a
record, so `verify_audit` finds the change.

Plain functions of a record's attributes, so the migration that re-keyed records written
before the key existed uses the same code with its historical model.
"""

from __future__ import annotations

import hashlib
import hmac
import json

from django.conf import settings

GENESIS_HASH = "0" * 64


def chain_key() -> bytes:
    return settings.AUDIT_HMAC_KEY.encode()


def _canonical(record) -> bytes:
    payload = {
        "prev": record.prev_hash,
        "at": record.at.isoformat(),
        "actor_id": record.actor_id,
        "actor_name": record.actor_name,
        "source": record.source,
        "action": record.action,
        "object_type": record.object_type,
        "object_id": record.object_id,
        "object_repr": record.object_repr,
        "changes": record.changes,
        "outcome": record.outcome,
        "message": record.message,
        "remote_addr": record.remote_addr,
    }
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()


def record_digest(record) -> str:
    """The record's hash in the chain (HMAC-SHA256 with AUDIT_HMAC_KEY)."""
    return hmac.new(chain_key(), _canonical(record), hashlib.sha256).hexdigest()


def unkeyed_digest(record) -> str:
    """The hash records had before the chain was keyed (plain SHA-256): anyone could
    recompute it. Only the re-keying migration uses it."""
    return hashlib.sha256(_canonical(record)).hexdigest()


def sign(document: dict) -> str:
    """HMAC of a small JSON document (an audit checkpoint), domain-separated from records."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), default=str)
    return hmac.new(chain_key(), b"checkpoint:" + canonical.encode(), hashlib.sha256).hexdigest()
