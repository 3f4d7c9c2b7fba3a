"""The overview's backup panel: each registered database's last good backup and its age."""

from __future__ import annotations

import datetime as dt

from backups.selectors import backup_freshness


def overview_backups(*, now: dt.datetime, user, systems, firing) -> dict:
    freshness = {f.database: f for f in backup_freshness()}
    return {
        "backups": [
            {
                "database": name,
                "last_success_at": f.last_success_at if f else None,
                "age": (now - f.last_success_at) if f and f.last_success_at else None,
                "planned": f is not None,
            }
            for name, f in (
                (s.system.name, freshness.get(s.system.name))
                for s in systems
                if s.system.kind == "postgres"
            )
        ]
    }
