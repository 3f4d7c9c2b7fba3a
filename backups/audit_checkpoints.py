"""The audit history's checkpoints, kept in the configuration Git repository.

That repository already lives outside the portal's database (and is pushed to
CONFIG_BACKUP_REMOTE when one is set), so whoever can rewrite the database cannot also move
the recorded end of the audit chain. A checkpoint goes in with every configuration commit
and, from the hourly schedule, in a commit of its own. Registered as opsportal.audit's
checkpoint store from BackupsConfig.ready().
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from backups import git_repository
from opsportal.audit.checkpoints import Checkpoint

CHECKPOINT_FILE = "audit-checkpoint.json"


def checkpoint_file_write(*, repo: Path, checkpoint: Checkpoint) -> None:
    (repo / CHECKPOINT_FILE).write_text(checkpoint.to_json())


class ConfigurationRepositoryStore:
    def _repo(self) -> Path:
        return Path(settings.CONFIG_BACKUP_REPO)

    def describe(self) -> str:
        return f"the configuration Git repository at {self._repo()}"

    def write(self, checkpoint: Checkpoint) -> str:
        from backups.services import audit_checkpoint_commit

        result = audit_checkpoint_commit(checkpoint=checkpoint)
        return f"commit {result.commit[:12]}" + (" (pushed)" if result.pushed else "")

    def read_newest(self) -> Checkpoint | None:
        text = git_repository.read_committed(self._repo(), CHECKPOINT_FILE)
        return Checkpoint.from_json(text) if text else None
