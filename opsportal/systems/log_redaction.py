"""Keeping secrets out of the log lines that libraries write.

urllib3 logs each request's target at DEBUG ('"POST /services/T1/B1/<token> HTTP/1.1" 200'),
and a webhook URL carries its token in its path. Code that sends to a secret URL does it
inside `secrets_redacted(...)`; the filter installed on the libraries' loggers replaces
those strings in every record written meanwhile in that thread (a context variable, so
concurrent deliveries do not see each other's secrets).
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

REDACTED = "[redacted]"
# The loggers that write request targets: urllib3 (under requests and the Docker SDK).
LIBRARY_LOGGERS = ("urllib3.connectionpool", "urllib3.connection", "urllib3.util.retry")

_in_flight: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar(
    "secrets_in_flight", default=()
)


def url_secrets(url: str) -> tuple[str, ...]:
    """The forms in which a secret URL shows up in a library's log line: whole, and its
    path with query (urllib3 logs the host and the request target apart)."""
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    return (url, target) if len(target) > 1 else (url,)


@contextmanager
def secrets_redacted(*secrets: str) -> Iterator[None]:
    token = _in_flight.set(_in_flight.get() + tuple(s for s in secrets if s))
    try:
        yield
    finally:
        _in_flight.reset(token)


class RedactSecretsFilter(logging.Filter):
    """Rewrites a record that quotes a secret in flight; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = _in_flight.get()
        if not secrets:
            return True
        message = record.getMessage()
        if any(secret in message for secret in secrets):
            for secret in sorted(secrets, key=len, reverse=True):
                message = message.replace(secret, REDACTED)
            record.msg, record.args = message, ()
        return True


def install() -> None:
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactSecretsFilter) for f in logger.filters):
            logger.addFilter(RedactSecretsFilter())
