"""A small adapter over the git CLI for the configuration repository."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

GIT_TIMEOUT_SECONDS = 60


class GitFailed(Exception):
    """A git command failed; the message quotes git."""


@dataclass(frozen=True)
class CommitResult:
    committed: bool
    commit: str
    pushed: bool
    message: str


def _git(repo: Path, *args: str, author: tuple[str, str] | None = None) -> str:
    command = ["git", "-C", str(repo)]
    if author:
        command += ["-c", f"user.name={author[0]}", "-c", f"user.email={author[1]}"]
    try:
        done = subprocess.run(
            [*command, *args],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_SECONDS,
            check=False,
            env={"GIT_TERMINAL_PROMPT": "0", "PATH": "/usr/local/bin:/usr/bin:/bin"},
        )
    except subprocess.TimeoutExpired as exc:
        raise GitFailed(f"git {args[0]} did not finish within {GIT_TIMEOUT_SECONDS} s.") from exc
    if done.returncode != 0:
        raise GitFailed(f"git {args[0]} failed: {(done.stderr or done.stdout).strip()[:500]}")
    return done.stdout.strip()


def ensure(repo: Path, *, remote: str = "") -> None:
    repo.mkdir(parents=True, exist_ok=True)
    if not (repo / ".git").exists():
        _git(repo, "init", "-q", "-b", "main")
    if remote:
        remotes = _git(repo, "remote").split()
        if "origin" in remotes:
            _git(repo, "remote", "set-url", "origin", remote)
        else:
            _git(repo, "remote", "add", "origin", remote)


def commit_all(
    repo: Path, *, message: str, author: tuple[str, str], remote: str = ""
) -> CommitResult:
    """Commit every change in the work tree (nothing to commit is not an error); push to
    origin when a remote is configured."""
    _git(repo, "add", "-A")
    status = _git(repo, "status", "--porcelain")
    committed = bool(status)
    if committed:
        _git(repo, "commit", "-q", "-m", message, author=author)
    head = _git(repo, "rev-parse", "--verify", "-q", "HEAD") if _has_commits(repo) else ""
    pushed = False
    if remote and head:
        _git(repo, "push", "-q", "origin", "HEAD:main")
        pushed = True
    return CommitResult(committed, head, pushed, message)


def _has_commits(repo: Path) -> bool:
    try:
        _git(repo, "rev-parse", "--verify", "-q", "HEAD")
    except GitFailed:
        return False
    return True


def has_changes(repo: Path) -> bool:
    """Whether the work tree differs from the last commit (new, changed or removed files)."""
    return bool(_git(repo, "status", "--porcelain"))


def read_committed(repo: Path, path: str, *, revision: str = "HEAD") -> str | None:
    """The text of `path` as committed in `revision`; None if the repository, the revision
    or the file does not exist."""
    if not (repo / ".git").exists() or not _has_commits(repo):
        return None
    try:
        return _git(repo, "show", f"{revision}:{path}")
    except GitFailed:
        return None


def commit_paths(
    repo: Path, paths: list[str], *, message: str, author: tuple[str, str], remote: str = ""
) -> CommitResult:
    """Commit the changes (new, changed or removed files) under `paths` only, whatever else
    the work tree holds; nothing changed there is not an error. Push to origin when a
    remote is configured."""
    _git(repo, "add", "-A", "--", *paths)
    staged = _git(repo, "diff", "--cached", "--name-only", "--", *paths)
    committed = bool(staged)
    if committed:
        _git(repo, "commit", "-q", "-m", message, "--", *paths, author=author)
    head = _git(repo, "rev-parse", "--verify", "-q", "HEAD") if _has_commits(repo) else ""
    pushed = False
    # Pushed even when nothing new was committed: an earlier push that failed is retried.
    if remote and head:
        _git(repo, "push", "-q", "origin", "HEAD:main")
        pushed = True
    return CommitResult(committed, head, pushed, message)
