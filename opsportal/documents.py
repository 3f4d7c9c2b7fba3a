"""Documents the portal files beside its configuration (post-incident review drafts under
`postmortems/`): a registry for the one place they are kept.

The configuration Git repository belongs to the backups app, and incidents must not depend
on it (backups already opens incidents for its alerts). So, as with the audit chain's
checkpoint store, this layer owns the registry and backups plugs its repository in from
BackupsConfig.ready(); a domain app that files a document asks `document_store()` and never
learns where the document went beyond what the store says.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Protocol


class DocumentStoreUnavailable(Exception):
    """The store cannot take documents now (not set up, or it failed); the message says why
    in words for the operator."""


@dataclass(frozen=True)
class FiledDocument:
    path: str
    # False: the store already held exactly this text, so nothing new was recorded.
    changed: bool
    # The store's own reference to what it now holds (a Git commit), or "".
    revision: str
    # Sent on to the store's remote too.
    pushed: bool


class DocumentStore(Protocol):
    def describe(self) -> str:
        """Where documents go, in words ("the configuration Git repository at …")."""

    def is_set_up(self) -> bool:
        """Whether documents can be filed now (False: a reason is in `not_set_up_reason`)."""

    def not_set_up_reason(self) -> str: ...

    def file(
        self,
        *,
        path: str,
        text: str,
        message: str,
        actor: object | None,
        replaces: str = "",
    ) -> FiledDocument:
        """Store `text` at the relative `path`, removing the other documents the glob
        `replaces` matches (e.g. the same review under a title since changed), recorded
        with `message` as `actor`. Raises DocumentStoreUnavailable."""


_store: DocumentStore | None = None


def document_store_register(store: DocumentStore) -> None:
    global _store
    _store = store


def document_store() -> DocumentStore | None:
    return _store


def document_path_check(path: str) -> str:
    """A document's path: relative, inside the store, no '..' (a title with slashes or dots
    cannot write outside `postmortems/`). Raises ValueError."""
    pure = PurePosixPath(path)
    # "..", "." and hidden names (".git") alike: a part starting with a dot is refused.
    if not path or pure.is_absolute() or any(part.startswith(".") for part in pure.parts):
        raise ValueError(f"Not a document path inside the store: {path!r}")
    return pure.as_posix()
