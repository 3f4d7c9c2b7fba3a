"""The runbook's "Configuration Backups": the portal's own configuration as readable,
deterministic JSON files (same configuration, same bytes), one file per model.

The registry belongs to the shared layer, beside the audit registry, so every app can
register what it exports without depending on the app that writes the files: backups
keeps the files in a Git repository and subscribes to `configuration_changed`.

Each app registers the models it exports with `register(model, key=..., exclude=...)`, in
dependency order (a model after the ones its foreign keys point to). Rows are identified
by their natural key, never by primary key, so an export applies to another portal.
Secrets are never exported: list them in `exclude` (the systems' SECRET_FIELDS are).
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from django.db import models, transaction
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_save
from django.dispatch import Signal

# Sent with `description` ("changed team 'DBA'") after a registered row changes in a way
# the export shows; the configuration repository (backups) commits it.
configuration_changed = Signal()


@dataclass
class ExportedModel:
    model: type[models.Model]
    key: tuple[str, ...]
    exclude: frozenset[str]
    after_import: Callable[[models.Model], None] | None = None
    rows: Callable[[], models.QuerySet] | None = None

    @property
    def file_name(self) -> str:
        return f"{self.model._meta.app_label}/{self.model._meta.model_name}.json"


_registry: dict[type[models.Model], ExportedModel] = {}
# Models that exported rows point at by natural key without being exported themselves
# (the System base of the registered system kinds).
_references: dict[type[models.Model], tuple[str, ...]] = {}


def register_reference(model: type[models.Model], *, key: tuple[str, ...] = ("name",)) -> None:
    """Let exported rows refer to `model`'s rows by `key` (rows exported elsewhere)."""
    _references.setdefault(model, tuple(key))


def _key_fields(model: type[models.Model]) -> tuple[str, ...]:
    return _registry[model].key if model in _registry else _references[model]


def _known(model: type[models.Model]) -> bool:
    return model in _registry or model in _references


def register(
    model: type[models.Model],
    *,
    key: tuple[str, ...] = ("name",),
    exclude: tuple[str, ...] | list[str] = (),
    after_import: Callable[[models.Model], None] | None = None,
    rows: Callable[[], models.QuerySet] | None = None,
) -> None:
    """Export `model`'s rows (or those `rows()` returns), identified by the `key` fields;
    `exclude` secrets and state; `after_import(instance)` runs after each imported row."""
    if model in _registry:
        return
    _registry[model] = ExportedModel(model, tuple(key), frozenset(exclude), after_import, rows)
    # "Committed automatically ... after changes": every change to an exported row is
    # recorded, and a debounced task commits a burst of them once.
    uid = f"configuration-backup-{model._meta.label_lower}"
    pre_save.connect(_before_save, sender=model, dispatch_uid=uid, weak=False)
    post_save.connect(_after_save, sender=model, dispatch_uid=uid, weak=False)
    post_delete.connect(_after_delete, sender=model, dispatch_uid=uid, weak=False)
    for m2m in model._meta.local_many_to_many:
        m2m_changed.connect(
            _after_m2m_change,
            sender=m2m.remote_field.through,
            dispatch_uid=f"{uid}-{m2m.name}",
            weak=False,
        )


def _tracking_changes() -> bool:
    from django.conf import settings

    return getattr(settings, "CONFIG_BACKUP_ON_CHANGE", True)


def _exported(instance: models.Model, spec: ExportedModel) -> tuple | None:
    """What the export holds for this row, to tell a real change from a save that changes
    only unexported fields (Celery beat saves every PeriodicTask's last_run_at)."""
    try:
        return (_natural_key(instance, spec), _row(instance, spec))
    except Exception:
        return None  # cannot tell (e.g. a dangling reference): count it as a change


def _before_save(sender, instance, raw=False, **kwargs) -> None:
    if raw or not _tracking_changes():
        return
    old = sender._default_manager.filter(pk=instance.pk).first() if instance.pk else None
    instance._configuration_before = _exported(old, _registry[sender]) if old else None


def _after_save(sender, instance, created, raw=False, **kwargs) -> None:
    if raw or not _tracking_changes():
        return
    before = instance.__dict__.pop("_configuration_before", None)
    if not created and before is not None and before == _exported(instance, _registry[sender]):
        return
    _record_change(f"{'created' if created else 'changed'} {_describe(instance)}")


def _after_m2m_change(sender, instance, action, **kwargs) -> None:
    if (
        action in {"post_add", "post_remove", "post_clear"}
        and _tracking_changes()
        and type(instance) in _registry
    ):
        _record_change(f"changed {_describe(instance)}")


def _after_delete(sender, instance, **kwargs) -> None:
    if _tracking_changes():
        _record_change(f"deleted {_describe(instance)}")


def _describe(instance: models.Model) -> str:
    return f"{instance._meta.verbose_name} {str(instance)!r}"[:300]


def _record_change(description: str) -> None:
    configuration_changed.send(sender=None, description=description)


def registered() -> list[ExportedModel]:
    return list(_registry.values())


def _fields(spec: ExportedModel) -> list[models.Field]:
    chosen = []
    for f in spec.model._meta.concrete_fields:
        if f.primary_key or f.name in spec.exclude:
            continue
        if f.remote_field and getattr(f.remote_field, "parent_link", False):
            continue
        if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False):
            continue  # timestamps would make two exports of one configuration differ
        if f.is_relation and not _known(f.related_model):
            continue  # e.g. a user account: not configuration
        chosen.append(f)
    return chosen


def _many_to_many(spec: ExportedModel) -> list[models.ManyToManyField]:
    """Plain many-to-many fields (an explicit through model is exported on its own)."""
    return [
        f
        for f in spec.model._meta.many_to_many
        if f.name not in spec.exclude
        and f.remote_field.through._meta.auto_created
        and _known(f.related_model)
    ]


def _plain(value: object) -> object:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if value is None or isinstance(value, bool | int | float | str | list | dict):
        return value
    return str(value)


def _natural_key(instance: models.Model, spec: ExportedModel | type[models.Model]) -> list:
    model = spec if isinstance(spec, type) else spec.model
    values = []
    for name in _key_fields(model):
        f = model._meta.get_field(name)
        if f.is_relation:
            target = getattr(instance, name)
            values.append(_natural_key(target, f.related_model) if target else None)
        else:
            values.append(_plain(getattr(instance, name)))
    return values


def _row(instance: models.Model, spec: ExportedModel) -> dict:
    row = {}
    for f in _fields(spec):
        if f.is_relation:
            target = getattr(instance, f.name)
            row[f.name] = _natural_key(target, f.related_model) if target else None
        else:
            row[f.name] = _plain(f.value_from_object(instance))
    if instance.pk is not None:
        for f in _many_to_many(spec):
            keys = [
                _natural_key(target, f.related_model) for target in getattr(instance, f.name).all()
            ]
            row[f.name] = sorted(keys, key=lambda k: json.dumps(k, default=str))
    return row


def configuration_dump() -> dict[str, str]:
    """{file name: file text} for every registered model, rows sorted by natural key."""
    files = {}
    for spec in _registry.values():
        rows = [
            {"key": _natural_key(obj, spec), "fields": _row(obj, spec)}
            for obj in (spec.rows() if spec.rows else spec.model._default_manager.all())
        ]
        rows.sort(key=lambda r: json.dumps(r["key"], sort_keys=True, default=str))
        document = {"model": spec.model._meta.label_lower, "key": list(spec.key), "rows": rows}
        files[spec.file_name] = (
            json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        )
    return files


def configuration_write(*, directory: Path) -> list[Path]:
    written = []
    for name, text in configuration_dump().items():
        path = Path(directory) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
        written.append(path)
    return written


def _lookup(spec: ExportedModel | type[models.Model], key: list) -> models.Model | None:
    model = spec if isinstance(spec, type) else spec.model
    filters = {}
    for name, value in zip(_key_fields(model), key, strict=True):
        f = model._meta.get_field(name)
        filters[name] = _lookup(f.related_model, value) if f.is_relation else value
    return model._default_manager.filter(**filters).first()


@dataclass
class ImportResult:
    created: dict[str, int] = field(default_factory=dict)
    existing: dict[str, int] = field(default_factory=dict)


@transaction.atomic
def configuration_apply(*, directory: Path) -> ImportResult:
    """Create every exported row that does not exist yet (by natural key), in registration
    order; rows already there are left as they are. All or nothing."""
    result = ImportResult()
    for spec in _registry.values():
        path = Path(directory) / spec.file_name
        if not path.exists():
            continue
        document = json.loads(path.read_text())
        label = spec.model._meta.label_lower
        result.created[label] = result.existing[label] = 0
        for row in document["rows"]:
            if _lookup(spec, row["key"]) is not None:
                result.existing[label] += 1
                continue
            values, related = {}, {}
            for name, value in row["fields"].items():
                f = spec.model._meta.get_field(name)
                if f.many_to_many:
                    related[name] = [_lookup(f.related_model, k) for k in value]
                elif f.is_relation:
                    values[name] = _lookup(f.related_model, value) if value else None
                else:
                    values[name] = value
            instance = spec.model(**values)
            instance.full_clean(validate_unique=False, validate_constraints=False)
            instance.save()
            for name, targets in related.items():
                getattr(instance, name).set([t for t in targets if t is not None])
            if spec.after_import:
                spec.after_import(instance)
            result.created[label] += 1
    return result


def register_defaults() -> None:
    """The shared layer's configuration: systems (without secrets), people, Celery beat
    schedules and alert rules. Domain apps call this first from their AppConfig.ready()
    (it registers once), then register theirs, so a model comes after what it points to."""
    from django_celery_beat.models import (
        ClockedSchedule,
        CrontabSchedule,
        IntervalSchedule,
        PeriodicTask,
        SolarSchedule,
    )

    from opsportal.monitoring.models import AlertRule
    from opsportal.people import models as people
    from opsportal.systems import models as systems

    check_state = systems.CHECK_STATE_FIELDS
    # Incidents, maintenance plans and alert rules name "systems" by the base model.
    register_reference(systems.System)
    register(
        systems.DockerEngine, exclude=[*systems.DockerEngine.SECRET_FIELDS, *check_state, "kind"]
    )
    for model in (systems.PostgresDatabase, systems.RedisCache, systems.HttpEndpoint):
        register(model, exclude=[*model.SECRET_FIELDS, *check_state, "kind"])
    # The status page's components and which systems decide their state (not the state).
    from opsportal.statuspage.models import Component

    register(Component, exclude=["state", "state_since", "state_reason"])
    register(people.Team)
    register(people.Contact, key=("name", "team"))
    register(people.OnCallRotation)
    register(people.RotationMember, key=("rotation", "contact"))
    register(IntervalSchedule, key=("every", "period"))
    register(
        CrontabSchedule,
        key=("minute", "hour", "day_of_month", "month_of_year", "day_of_week", "timezone"),
    )
    register(SolarSchedule, key=("event", "latitude", "longitude"))
    register(ClockedSchedule, key=("clocked_time",))
    register(
        PeriodicTask,
        exclude=["last_run_at", "total_run_count", "date_changed"],
        # A plan's own schedule entry is derived from the plan and re-created with it.
        rows=lambda: PeriodicTask.objects.exclude(task="backups.run_scheduled"),
    )

    # Alert rules (monitoring): the systems they name are referred to by name.
    register(AlertRule)
