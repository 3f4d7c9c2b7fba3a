from django.core.management.base import BaseCommand, CommandError

from opsportal.audit.services import audit_verify_chain


class Command(BaseCommand):
    help = "Verify the audit history's hash chain and report the first record where it breaks."

    def handle(self, *args, **options):
        checked, chain_break = audit_verify_chain()
        if chain_break is not None:
            raise CommandError(
                f"Audit chain broken at record {chain_break.record_id}: {chain_break.reason} "
                f"({checked} records read)."
            )
        self.stdout.write(self.style.SUCCESS(f"Audit chain intact: {checked} records verified."))
