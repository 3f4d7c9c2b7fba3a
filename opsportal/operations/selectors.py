"""Read queries over operations that more than one caller needs."""

from __future__ import annotations

from opsportal.operations.models import Operation, OperationStatus
from opsportal.systems.adapters.postgres import APPLICATION_NAME


def connection_owners_seen(*, target_id: int | None) -> dict[str, list[str]]:
    """The applications and users holding connections in the target's newest successful
    connection summary (the runbook's "Check connection pool status"), most connections
    first: what "Restart database connections" is likely to be aimed at. The portal's own
    and sessions without a name are left out."""
    if target_id is None:
        return {}
    newest = (
        Operation.objects.filter(
            target_id=target_id, kind="db_connections", status=OperationStatus.SUCCEEDED
        )
        .order_by("-requested_at")
        .values_list("result", flat=True)
        .first()
    )
    if not newest:
        return {}

    def names(key: str) -> list[str]:
        return [
            name for name, _count in newest.get(key, []) if name not in ("(none)", APPLICATION_NAME)
        ]

    return {"application_name": names("by_application"), "user": names("by_user")}
