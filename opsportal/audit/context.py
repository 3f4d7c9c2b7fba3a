"""Who is acting, and from where, for the audit records written during a request or task."""

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from opsportal.audit.models import AuditSource


@dataclass(frozen=True)
class AuditContext:
    actor: object | None = None
    source: str = AuditSource.SYSTEM
    remote_addr: str | None = None


_current: contextvars.ContextVar[AuditContext] = contextvars.ContextVar(
    "audit_context",
    default=AuditContext(),  # noqa: B039 (frozen dataclass)
)


def current() -> AuditContext:
    return _current.get()


@contextmanager
def acting(
    *, actor: object | None = None, source: str, remote_addr: str | None = None
) -> Iterator[AuditContext]:
    context = AuditContext(actor=actor, source=source, remote_addr=remote_addr)
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)


def set_current(*, actor: object | None, source: str, remote_addr: str | None = None) -> None:
    """Name who is acting for the rest of a request whose context is already open: an API
    token is checked inside the view, after AuditContextMiddleware opened the request's
    context (which restores what was there before when the request ends)."""
    _current.set(AuditContext(actor=actor, source=source, remote_addr=remote_addr))
