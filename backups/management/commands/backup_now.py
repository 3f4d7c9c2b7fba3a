"""The runbook's "Manual backup": `manage.py backup_now <database>`."""

from django.core.management.base import BaseCommand, CommandError

from backups import services
from backups.models import BackupStatus
from opsportal.audit import context
from opsportal.audit.models import AuditSource
from opsportal.systems.models import PostgresDatabase


class Command(BaseCommand):
    help = "Back up a registered PostgreSQL database now (runs in this process)."

    def add_arguments(self, parser):
        parser.add_argument("database", help="The registered database's name.")
        parser.add_argument("--reason", default="", help="Why (kept in the audit log).")

    def handle(self, *args, database, reason, **options):
        target = PostgresDatabase.objects.filter(name=database).first()
        if target is None:
            names = ", ".join(PostgresDatabase.objects.values_list("name", flat=True)) or "none"
            raise CommandError(f"No registered database is named {database!r} (known: {names}).")
        with context.acting(source=AuditSource.CLI):
            backup = services.backup_run_now(database=target, reason=reason)
        if backup.status != BackupStatus.SUCCEEDED:
            raise CommandError(f"Backup #{backup.pk} of {target} failed: {backup.message}")
        self.stdout.write(
            f"Backup #{backup.pk} of {target}: {backup.file_name}, {backup.size_bytes} bytes, "
            f"sha256 {backup.sha256}, {backup.duration_seconds:.1f} s; "
            f"{backup.get_verification_display().lower()}: {backup.verification_message}"
        )
