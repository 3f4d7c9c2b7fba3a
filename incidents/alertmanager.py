"""Alertmanager's webhook payload (format version 4), checked before anything is recorded.

https://prometheus.io/docs/alerting/latest/configuration/#webhook_config gives the shape:
an object with `alerts` (a list of objects with `status`, `labels`, `annotations`,
`startsAt`, `endsAt`, `generatorURL`, `fingerprint`) and the group's `commonLabels`,
`commonAnnotations`, `groupLabels`. Labels and annotations are string-to-string maps. A
payload that does not fit is refused as a whole with the first bad field named (a 400), so a
half-understood batch never opens half its incidents.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

# A real group carries a handful of alerts; Alertmanager's own default cap on a webhook's
# alerts (max_alerts) is unlimited, so the portal sets its own.
MAX_ALERTS = 1000
MAX_LABELS = 100
MAX_LABEL_NAME = 200
MAX_LABEL_VALUE = 10_000
MAX_FINGERPRINT = 128
STATUSES = ("firing", "resolved")


class PayloadInvalid(ValueError):
    """The body is not Alertmanager's webhook JSON; `str()` names the first bad field."""


@dataclass(frozen=True)
class WebhookAlert:
    status: str
    labels: dict[str, str]
    annotations: dict[str, str]
    fingerprint: str = ""
    generator_url: str = ""


def _string_map(value, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PayloadInvalid(f"{where} must be an object of strings, got {_kind(value)}.")
    if len(value) > MAX_LABELS:
        raise PayloadInvalid(f"{where} has {len(value)} entries; at most {MAX_LABELS}.")
    for key, item in value.items():
        if len(key) > MAX_LABEL_NAME:
            raise PayloadInvalid(f"{where} has a name over {MAX_LABEL_NAME} characters.")
        if not isinstance(item, str):
            raise PayloadInvalid(f"{where}.{key[:50]} must be a string, got {_kind(item)}.")
        if len(item) > MAX_LABEL_VALUE:
            raise PayloadInvalid(f"{where}.{key[:50]} is over {MAX_LABEL_VALUE} characters.")
        if "\x00" in key or "\x00" in item:
            raise PayloadInvalid(f"{where}.{key[:50]} contains a NUL character.")
    return value


def _optional_string(value, where: str, *, max_length: int = 2000) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise PayloadInvalid(f"{where} must be a string, got {_kind(value)}.")
    if len(value) > max_length:
        raise PayloadInvalid(f"{where} is over {max_length} characters.")
    if "\x00" in value:
        raise PayloadInvalid(f"{where} contains a NUL character.")
    return value


def _status(value, where: str, default: str) -> str:
    if value is None:
        return default
    if value not in STATUSES:
        raise PayloadInvalid(f"{where} must be 'firing' or 'resolved'.")
    return value


def _kind(value) -> str:
    return {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def parse_payload(body: bytes) -> tuple[dict[str, str], dict[str, str], list[WebhookAlert]]:
    """(commonLabels, commonAnnotations, alerts) of a version-4 webhook body, or
    PayloadInvalid naming the first field that does not fit."""
    try:
        payload = json.loads(body)
    except RecursionError:
        raise PayloadInvalid("The JSON is nested too deeply.") from None
    except (ValueError, UnicodeDecodeError):
        raise PayloadInvalid("The body is not JSON.") from None
    if not isinstance(payload, dict):
        raise PayloadInvalid(f"The body must be a JSON object, got {_kind(payload)}.")
    version = payload.get("version")
    if version is not None and (not isinstance(version, (str, int)) or str(version) != "4"):
        raise PayloadInvalid('version must be "4" (Alertmanager\'s webhook format).')
    status = _status(payload.get("status"), "status", "firing")
    common_labels = _string_map(payload.get("commonLabels"), "commonLabels")
    common_annotations = _string_map(payload.get("commonAnnotations"), "commonAnnotations")
    _string_map(payload.get("groupLabels"), "groupLabels")
    alerts = payload.get("alerts")
    if not isinstance(alerts, list):
        raise PayloadInvalid(f"alerts must be a list, got {_kind(alerts)}.")
    if len(alerts) > MAX_ALERTS:
        raise PayloadInvalid(f"alerts has {len(alerts)} entries; at most {MAX_ALERTS}.")
    parsed = []
    for index, alert in enumerate(alerts):
        where = f"alerts[{index}]"
        if not isinstance(alert, dict):
            raise PayloadInvalid(f"{where} must be an object, got {_kind(alert)}.")
        parsed.append(
            WebhookAlert(
                status=_status(alert.get("status"), f"{where}.status", status),
                labels=_string_map(alert.get("labels"), f"{where}.labels"),
                annotations=_string_map(alert.get("annotations"), f"{where}.annotations"),
                fingerprint=_optional_string(
                    alert.get("fingerprint"), f"{where}.fingerprint", max_length=MAX_FINGERPRINT
                ),
                generator_url=_optional_string(alert.get("generatorURL"), f"{where}.generatorURL"),
            )
        )
        for key in ("startsAt", "endsAt"):
            _optional_string(alert.get(key), f"{where}.{key}", max_length=64)
    return common_labels, common_annotations, parsed
