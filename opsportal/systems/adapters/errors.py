class AdapterError(Exception):
    """A call to a real system failed; `str(error)` is a message fit for an operator."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class Unreachable(AdapterError):
    """Nothing answered where the system should be (refused, no such socket, no route)."""


class TimedOut(AdapterError):
    """The system did not answer within the adapter's timeout."""


class AuthenticationFailed(AdapterError):
    """The system answered but rejected the credentials."""


class NotFound(AdapterError):
    """The system answered but the thing asked for does not exist."""


class OperationFailed(AdapterError):
    """The system answered but the request failed or gave an unexpected answer."""
