from django.core.management.base import BaseCommand
from django.db import transaction

from opsportal.audit import context
from opsportal.audit.models import AuditSource
from opsportal.defaults import load_defaults


class Command(BaseCommand):
    help = "Load the runbook's defaults (teams, groups, schedules, runbooks…). Idempotent."

    def handle(self, *args, **options):
        with context.acting(source=AuditSource.CLI), transaction.atomic():
            load_defaults()
        self.stdout.write(self.style.SUCCESS("Runbook defaults are in place."))
