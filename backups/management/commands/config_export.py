"""`manage.py config_export`: the configuration into its Git repository, committed."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from backups import services
from backups.git_repository import GitFailed
from opsportal.audit import context
from opsportal.audit.models import AuditSource


class Command(BaseCommand):
    help = "Export the portal's configuration as JSON files and commit them to Git."

    def add_arguments(self, parser):
        parser.add_argument("--repo", help="Repository directory (default CONFIG_BACKUP_REPO).")
        parser.add_argument("--message", default="", help="Commit message.")

    def handle(self, *args, repo, message, **options):
        with context.acting(source=AuditSource.CLI):
            try:
                result = services.configuration_backup(
                    message=message, directory=Path(repo) if repo else None
                )
            except (GitFailed, OSError) as exc:
                raise CommandError(f"Configuration export failed: {exc}") from exc
        verdict = "committed" if result.committed else "unchanged, nothing committed"
        self.stdout.write(
            f"Configuration {verdict} (HEAD {result.commit[:12] or 'none'})"
            + ("; pushed" if result.pushed else "")
        )
