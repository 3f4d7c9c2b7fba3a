"""The configuration Git repository as opsportal's document store: where post-incident
review drafts (and any other document a domain app files) are committed beside the
configuration, and pushed with it. Registered from BackupsConfig.ready()."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from backups import git_repository
from opsportal.documents import DocumentStoreUnavailable, FiledDocument


class ConfigurationRepositoryDocuments:
    def _repo(self) -> Path:
        return Path(settings.CONFIG_BACKUP_REPO)

    def describe(self) -> str:
        remote = getattr(settings, "CONFIG_BACKUP_REMOTE", "")
        return f"the configuration Git repository at {self._repo()}" + (
            " (pushed to its remote)" if remote else ""
        )

    def is_set_up(self) -> bool:
        return (self._repo() / ".git").is_dir()

    def not_set_up_reason(self) -> str:
        return (
            f"The configuration Git repository is not set up: there is no repository at "
            f"{self._repo()} (CONFIG_BACKUP_REPO) yet; the first configuration backup "
            "creates it."
        )

    def file(
        self,
        *,
        path: str,
        text: str,
        message: str,
        actor: object | None,
        replaces: str = "",
    ) -> FiledDocument:
        from backups.services import configuration_document_file

        if not self.is_set_up():
            raise DocumentStoreUnavailable(self.not_set_up_reason())
        try:
            result = configuration_document_file(
                path=path, text=text, message=message, actor=actor, replaces=replaces
            )
        except (git_repository.GitFailed, OSError) as exc:
            raise DocumentStoreUnavailable(
                f"Could not commit {path} to {self.describe()}: {exc}"
            ) from exc
        return FiledDocument(
            path=path, changed=result.committed, revision=result.commit, pushed=result.pushed
        )
