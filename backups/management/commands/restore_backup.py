"""The runbook's "Restore": `manage.py restore_backup <backup id> --target <database>`."""

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from backups import services
from backups.models import Backup, RestoreStatus
from opsportal.audit import context
from opsportal.audit.models import AuditSource
from opsportal.systems.models import PostgresDatabase


class Command(BaseCommand):
    help = (
        "Restore a backup into a registered database (after a safety backup of it). "
        "Confirm by passing the target system's registered name with --confirm."
    )

    def add_arguments(self, parser):
        parser.add_argument("backup", type=int, help="The backup's number.")
        parser.add_argument(
            "--target", help="Registered database to restore into (default: the original)."
        )
        parser.add_argument(
            "--confirm",
            required=True,
            help="The target system's registered name (not its database name).",
        )
        parser.add_argument("--reason", required=True, help="Why (kept in the audit log).")
        parser.add_argument(
            "--disconnect-sessions",
            action="store_true",
            help="End other sessions on the target first.",
        )

    def handle(self, *args, backup, target, confirm, reason, disconnect_sessions, **options):
        chosen = Backup.objects.select_related("database").filter(pk=backup).first()
        if chosen is None:
            raise CommandError(f"There is no backup #{backup}.")
        database = chosen.database
        if target:
            database = PostgresDatabase.objects.filter(name=target).first()
            if database is None:
                raise CommandError(f"No registered database is named {target!r}.")
        with context.acting(source=AuditSource.CLI):
            try:
                restore = services.restore_request(
                    backup=chosen,
                    target=database,
                    actor=None,
                    reason=reason,
                    confirmation=confirm,
                    disconnect_sessions=disconnect_sessions,
                    dispatch=False,
                )
            except ValidationError as exc:
                raise CommandError(exc.messages[0]) from exc
            restore = services.restore_run_now(restore=restore)
        if restore.status != RestoreStatus.SUCCEEDED:
            raise CommandError(f"Restore #{restore.pk} failed: {restore.message}")
        self.stdout.write(restore.message)
