"""Writing and verifying the audit history.

Two ways in: `audit_record()` for operations on real systems and workflow events, and
`audit_register()` for models whose every create, change and delete is recorded with
the values before and after (secret fields masked).
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from django.db import connection, models, transaction
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_save
from django.utils import timezone

from opsportal.actors import acting_user
from opsportal.audit import checkpoints, context
from opsportal.audit.chain import GENESIS_HASH
from opsportal.audit.checkpoints import Checkpoint
from opsportal.audit.models import AuditAction, AuditOutcome, AuditRecord

SECRET_MASK = "********"  # noqa: S105 (the mask, not a secret)
# Serialises appends so each record chains to the one committed just before it.
_CHAIN_LOCK_KEY = 7_734_201


def _chain_lock() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_CHAIN_LOCK_KEY])


def audit_record(
    *,
    action: str,
    obj: models.Model | None = None,
    object_type: str = "",
    object_id: str = "",
    object_repr: str = "",
    changes: dict | None = None,
    outcome: str = AuditOutcome.SUCCESS,
    message: str = "",
    actor: object | None = None,
    source: str | None = None,
) -> AuditRecord:
    """Append one record to the audit chain; actor and source default to the current context."""
    ctx = context.current()
    actor = actor if actor is not None else ctx.actor
    if obj is not None:
        object_type = object_type or obj._meta.label_lower
        object_id = object_id or str(obj.pk or "")
        object_repr = object_repr or str(obj)[:255]
    with transaction.atomic():
        _chain_lock()
        prev_hash = (
            AuditRecord.objects.order_by("-id").values_list("hash", flat=True).first()
            or GENESIS_HASH
        )
        record = AuditRecord(
            at=timezone.now(),
            actor=acting_user(actor),
            actor_name=getattr(actor, "get_username", lambda: "")() if actor else "",
            source=source or ctx.source,
            action=action,
            object_type=object_type,
            object_id=object_id,
            object_repr=object_repr[:255],
            changes=changes or {},
            outcome=outcome,
            message=message,
            remote_addr=ctx.remote_addr,
            prev_hash=prev_hash,
        )
        record.hash = record.compute_hash()
        record.save(force_insert=True)
    return record


@dataclass(frozen=True)
class ChainBreak:
    record_id: int
    reason: str


def audit_verify_chain(*, batch_size: int = 2000) -> tuple[int, ChainBreak | None]:
    """Walk the chain in order; return how many records were checked and the first break."""
    expected_prev = GENESIS_HASH
    checked = 0
    for record in AuditRecord.objects.order_by("id").iterator(chunk_size=batch_size):
        checked += 1
        if record.prev_hash != expected_prev:
            return checked, ChainBreak(
                record.pk,
                "its predecessor hash does not match (a record before it was removed or altered)",
            )
        if record.compute_hash() != record.hash:
            return checked, ChainBreak(record.pk, "its contents do not match its hash")
        expected_prev = record.hash
    return checked, None


# --- checkpoints outside the database -----------------------------------------------------


class NoCheckpointStore(Exception):
    """No app registered a place to keep audit checkpoints."""


def audit_checkpoint_write() -> tuple[Checkpoint, str]:
    """Sign where the chain ends now and hand it to the registered store (hourly; backups
    also puts one into each configuration commit). Returns the checkpoint and where it went;
    when the chain has not moved since the newest kept checkpoint, nothing is written.

    Writes no audit record of its own: it would move the chain's end every hour, and the
    store keeps its own history (the Git log)."""
    store = checkpoints.checkpoint_store()
    if store is None:
        raise NoCheckpointStore("No checkpoint store is registered (the backups app keeps them).")
    checkpoint = checkpoints.checkpoint_make()
    newest = store.read_newest()
    if newest is not None and (newest.last_id, newest.head_hash, newest.count) == (
        checkpoint.last_id,
        checkpoint.head_hash,
        checkpoint.count,
    ):
        return newest, "unchanged"
    return checkpoint, store.write(checkpoint)


def audit_load_defaults() -> None:
    from opsportal.schedules import periodic_task_ensure

    periodic_task_ensure(
        name="Audit checkpoint",
        task="audit.write_checkpoint",
        crontab={"minute": "50"},
        description="Keeps a signed checkpoint of the audit chain's end outside the database "
        "(hourly), so verify_audit can tell when newest records were removed.",
    )


# --- model change history -------------------------------------------------------------

_registry: dict[type[models.Model], AuditedModel] = {}


@dataclass(frozen=True)
class AuditedModel:
    secret_fields: frozenset[str]
    exclude_fields: frozenset[str]


def _json_safe(value: object) -> object:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    return str(value)


def _field_values(instance: models.Model, spec: AuditedModel) -> dict[str, object]:
    values = {}
    for field in instance._meta.concrete_fields:
        if field.name in spec.exclude_fields:
            continue
        values[field.name] = field.value_from_object(instance)
    return values


def _diff(before: dict, after: dict, spec: AuditedModel) -> dict[str, list]:
    changes = {}
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        if name in spec.secret_fields:
            changes[name] = [
                SECRET_MASK if old else "",
                SECRET_MASK + " (changed)" if new else "(cleared)",
            ]
        else:
            changes[name] = [_json_safe(old), _json_safe(new)]
    return changes


def _on_pre_save(sender, instance, raw=False, **kwargs):
    if raw or instance._state.adding or instance.pk is None:
        instance._audit_before = None
        return
    spec = _registry[sender]
    previous = sender._default_manager.filter(pk=instance.pk).first()
    instance._audit_before = _field_values(previous, spec) if previous else None


def _on_post_save(sender, instance, created, raw=False, **kwargs):
    if raw:
        return
    spec = _registry[sender]
    after = _field_values(instance, spec)
    before = getattr(instance, "_audit_before", None)
    if created or before is None:
        changes = _diff({}, after, spec)
        audit_record(action=AuditAction.CREATE, obj=instance, changes=changes)
        return
    changes = _diff(before, after, spec)
    if changes:
        audit_record(action=AuditAction.CHANGE, obj=instance, changes=changes)


def _on_post_delete(sender, instance, **kwargs):
    spec = _registry[sender]
    audit_record(
        action=AuditAction.DELETE,
        obj=instance,
        changes=_diff(_field_values(instance, spec), {}, spec),
    )


def _on_m2m_changed(sender, instance, action, model, pk_set, **kwargs):
    if action not in {"post_add", "post_remove", "post_clear"}:
        return
    if type(instance) not in _registry:
        return
    field_name = next(
        (f.name for f in instance._meta.many_to_many if f.remote_field.through is sender),
        sender._meta.model_name,
    )
    verb = {"post_add": "added", "post_remove": "removed", "post_clear": "cleared"}[action]
    names = sorted(str(o) for o in model._default_manager.filter(pk__in=pk_set or []))
    audit_record(
        action=AuditAction.CHANGE,
        obj=instance,
        changes={field_name: {verb: names}},
    )


def audit_register(
    model: type[models.Model],
    *,
    secret_fields: Iterable[str] = (),
    exclude_fields: Iterable[str] = (),
) -> None:
    """Record every create, change and delete of `model` (and its many-to-many fields)."""
    if model in _registry:
        return
    _registry[model] = AuditedModel(frozenset(secret_fields), frozenset(exclude_fields))
    uid = f"audit-{model._meta.label_lower}"
    pre_save.connect(_on_pre_save, sender=model, dispatch_uid=uid)
    post_save.connect(_on_post_save, sender=model, dispatch_uid=uid)
    post_delete.connect(_on_post_delete, sender=model, dispatch_uid=uid)
    for field in model._meta.local_many_to_many:
        m2m_changed.connect(
            _on_m2m_changed, sender=field.remote_field.through, dispatch_uid=f"{uid}-{field.name}"
        )
