"""`manage.py config_import <directory>`: apply an exported configuration to this portal."""

from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from backups import services
from opsportal.audit import context
from opsportal.audit.models import AuditSource


class Command(BaseCommand):
    help = (
        "Create every row of an exported configuration (a checkout of the configuration "
        "repository) that does not exist here yet. All or nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("directory", help="The exported configuration's directory.")

    def handle(self, *args, directory, **options):
        if not Path(directory).is_dir():
            raise CommandError(f"{directory} is not a directory.")
        with context.acting(source=AuditSource.CLI):
            try:
                result = services.configuration_restore(directory=Path(directory))
            except ValidationError as exc:
                raise CommandError(f"Nothing imported; a row is invalid: {exc}") from exc
        for label, count in result.created.items():
            self.stdout.write(f"{label}: {count} created, {result.existing[label]} already here")
