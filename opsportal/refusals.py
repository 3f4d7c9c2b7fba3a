"""The one base exception for "the service refused, here is why".

A service that declines a request (a conflicting operation, a closed incident, a window in the
wrong state, a database already being backed up) raises a subclass of `ServiceRefused` whose
`message` says why in words for the operator. Callers that only show the reason catch the base
class; the admin shows it with `opsportal.admin_mixins.message_refusal`, so every admin page
reports a refusal the same way. Each domain keeps its own subclass (OperationRefused,
IncidentRefused, MaintenanceError, BackupBusy, ...) so callers can still tell them apart."""

from __future__ import annotations


class ServiceRefused(Exception):
    """A service call was refused; `message` (also `str()`) says why, for the operator."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message
