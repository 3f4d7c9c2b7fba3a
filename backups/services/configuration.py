"""Configuration backups (the runbook's "Configuration Backups"): export the portal's
configuration and commit it to Git with an audit checkpoint, commit a burst of configuration
changes once it is over, commit an audit checkpoint on its own, and import an export."""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from backups.models import ConfigurationChange
from backups.services._common import _dispatch_configuration_commit
from opsportal.actors import acting_name, acting_user
from opsportal.audit import context
from opsportal.audit.checkpoints import Checkpoint, checkpoint_make
from opsportal.audit.models import AuditAction, AuditOutcome
from opsportal.audit.services import audit_record

# Default of CONFIG_BACKUP_DEBOUNCE_SECONDS: configuration changes closer together than
# this are one burst, committed once when the burst is over.
CONFIG_DEBOUNCE = dt.timedelta(seconds=30)


def configuration_backup(
    *, actor: object | None = None, message: str = "", directory: Path | None = None
):
    """Export the configuration into the Git repository and commit it with an audit
    checkpoint (and push when a remote is configured). Unchanged configuration makes no
    commit."""
    from backups import audit_checkpoints, git_repository
    from opsportal import configuration

    repo = Path(directory or settings.CONFIG_BACKUP_REPO)
    remote = getattr(settings, "CONFIG_BACKUP_REMOTE", "")
    name = acting_name(actor, otherwise="OpsPortal")
    email = getattr(actor, "email", "") or "opsportal@localhost"
    try:
        # The daily commit and a change's commit may run at once in two worker processes.
        with _repository_lock(repo):
            git_repository.ensure(repo, remote=remote)
            configuration.configuration_write(directory=repo)
            if git_repository.has_changes(repo):
                # Every configuration commit also anchors the audit chain's end outside the
                # database (see backups/audit_checkpoints.py).
                audit_checkpoints.checkpoint_file_write(repo=repo, checkpoint=checkpoint_make())
            result = git_repository.commit_all(
                repo,
                message=message or f"Configuration as of {timezone.now():%Y-%m-%d %H:%M} UTC",
                author=(name, email),
                remote=remote,
            )
    except (git_repository.GitFailed, OSError) as exc:
        audit_record(
            action=AuditAction.OPERATION,
            object_type="backups.configuration",
            object_repr=str(repo),
            actor=actor,
            outcome=AuditOutcome.FAILURE,
            message=f"Configuration backup failed: {exc}",
        )
        raise
    audit_record(
        action=AuditAction.OPERATION,
        object_type="backups.configuration",
        object_repr=str(repo),
        actor=actor,
        message=(
            f"Configuration committed as {result.commit[:12]}"
            if result.committed
            else "Configuration unchanged; nothing committed"
        )
        + (" and pushed" if result.pushed else ""),
    )
    return result


def audit_checkpoint_commit(*, checkpoint: Checkpoint):
    """Commit `checkpoint` to the configuration repository on its own (the hourly schedule)
    and push it when a remote is configured."""
    from backups import audit_checkpoints, git_repository

    repo = Path(settings.CONFIG_BACKUP_REPO)
    remote = getattr(settings, "CONFIG_BACKUP_REMOTE", "")
    with _repository_lock(repo):
        git_repository.ensure(repo, remote=remote)
        audit_checkpoints.checkpoint_file_write(repo=repo, checkpoint=checkpoint)
        return git_repository.commit_all(
            repo,
            message=f"Audit checkpoint: {checkpoint.count} records up to #{checkpoint.last_id}",
            author=("OpsPortal", "opsportal@localhost"),
            remote=remote,
        )


def configuration_document_file(
    *,
    path: str,
    text: str,
    message: str,
    actor: object | None = None,
    replaces: str = "",
):
    """Write one document (e.g. a post-incident review draft) into the configuration
    repository at the relative `path`, removing the other files the glob `replaces`
    matches, and commit only those paths (pushed when a remote is configured); the same
    text again makes no commit. The repository must exist already (the configuration
    backup creates it): a document never starts a repository of its own. Raises
    git_repository.GitFailed or OSError."""
    from backups import git_repository
    from opsportal.documents import document_path_check

    repo = Path(settings.CONFIG_BACKUP_REPO)
    remote = getattr(settings, "CONFIG_BACKUP_REMOTE", "")
    path = document_path_check(path)
    if replaces:
        document_path_check(replaces)
    name = acting_name(actor, otherwise="OpsPortal")
    email = getattr(actor, "email", "") or "opsportal@localhost"
    with _repository_lock(repo):
        if not (repo / ".git").exists():
            raise git_repository.GitFailed(f"There is no Git repository at {repo}.")
        target = repo / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists() or target.read_text() != text:
            target.write_text(text)
        touched = [path]
        for old in sorted(repo.glob(replaces)) if replaces else []:
            relative = old.relative_to(repo).as_posix()
            if relative != path and old.is_file():
                old.unlink()
                touched.append(relative)
        return git_repository.commit_paths(
            repo, touched, message=message, author=(name, email), remote=remote
        )


def configuration_restore(*, directory: Path, actor: object | None = None):
    """Apply an exported configuration (e.g. a checkout of the repository) to this portal."""
    from opsportal import configuration

    result = configuration.configuration_apply(directory=Path(directory))
    audit_record(
        action=AuditAction.OPERATION,
        object_type="backups.configuration",
        object_repr=str(directory),
        actor=actor,
        message="Configuration imported: "
        + ", ".join(f"{label} +{n}" for label, n in result.created.items() if n),
    )
    return result


@contextlib.contextmanager
def _repository_lock(repo: Path) -> Iterator[None]:
    repo.parent.mkdir(parents=True, exist_ok=True)
    with open(repo.parent / f".{repo.name}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _configuration_debounce() -> dt.timedelta:
    seconds = getattr(settings, "CONFIG_BACKUP_DEBOUNCE_SECONDS", None)
    return dt.timedelta(seconds=seconds) if seconds is not None else CONFIG_DEBOUNCE


def configuration_change_record(*, description: str) -> ConfigurationChange:
    """Note a change to exported configuration (called from the registered models' save and
    delete signals, inside the change's transaction); it is committed to Git when its
    burst of changes is over."""
    ctx = context.current()
    actor = acting_user(ctx.actor)
    now = timezone.now()
    window = _configuration_debounce()
    burst_started = not ConfigurationChange.objects.filter(committed_at=None).exists()
    change = ConfigurationChange.objects.create(
        changed_at=now,
        commit_after=now + window,
        actor=actor,
        actor_name=actor.get_username() if actor else "",
        description=description[:300],
    )
    if burst_started:
        # Later changes of the burst find this one pending and send nothing; the task
        # waits for the burst's end itself.
        _dispatch_configuration_commit(countdown=window.total_seconds())
    return change


def configuration_commit_changes(*, now: dt.datetime | None = None):
    """Commit the pending configuration changes once their burst is over: one commit for
    the burst, authored by whoever made its last change. A burst that changed no exported
    bytes makes no commit. Returns the CommitResult, or None while there is nothing to do
    yet."""
    now = now or timezone.now()
    pending = list(
        ConfigurationChange.objects.filter(committed_at=None, changed_at__lte=now)
        .select_related("actor")
        .order_by("changed_at", "pk")
    )
    if not pending:
        return None
    burst_ends = max(change.commit_after for change in pending)
    if burst_ends > now:
        _dispatch_configuration_commit(countdown=(burst_ends - now).total_seconds() + 0.2)
        return None
    last = pending[-1]
    people = sorted({change.actor_name or "the system" for change in pending})
    described = list(dict.fromkeys(change.description for change in pending))
    lines = [f"- {text}" for text in described[:50]]
    if len(described) > 50:
        lines.append(f"- ... and {len(described) - 50} more")
    message = (
        f"Configuration changed by {', '.join(people)} ({len(pending)} change(s))\n\n"
        + "\n".join(lines)
    )
    # A failure (git, disk) raises and leaves the rows pending; the sweeper retries them.
    result = configuration_backup(actor=last.actor, message=message)
    ConfigurationChange.objects.filter(
        pk__in=[change.pk for change in pending], committed_at=None
    ).update(committed_at=timezone.now(), commit=result.commit if result.committed else "")
    newer = ConfigurationChange.objects.filter(committed_at=None).order_by("-commit_after").first()
    if newer is not None:
        # Changes made while this commit ran: their own burst, their own commit.
        _dispatch_configuration_commit(
            countdown=(newer.commit_after - timezone.now()).total_seconds() + 0.2
        )
    return result
