"""Where monitoring hands a firing or cleared alert: incident handling plugs its receiver in
from its AppConfig.ready(), so the shared layer never imports a domain app."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_receiver: Callable[..., Any] | None = None


class NoAlertReceiver(RuntimeError):
    pass


def alert_receiver_register(receiver: Callable[..., Any]) -> None:
    """`receiver(fingerprint=, status=, title=, severity=, category=, systems=, runbook_name=,
    evidence=, source=, auto_resolve=)` takes each change and returns the alert it recorded
    (with its `incident_id`)."""
    global _receiver
    _receiver = receiver


def alert_hand_off(**alert: Any) -> Any:
    if _receiver is None:
        raise NoAlertReceiver("No app takes alerts (incident handling is not installed).")
    return _receiver(**alert)
