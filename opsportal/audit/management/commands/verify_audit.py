from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from opsportal.audit import checkpoints
from opsportal.audit.services import audit_verify_chain


class Command(BaseCommand):
    help = (
        "Verify the audit history's keyed hash chain and compare it with the newest signed "
        "checkpoint kept outside the database; report the first record where it breaks, a "
        "rewritten record, or a truncated history."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--checkpoint",
            type=Path,
            help="Compare with this checkpoint file (e.g. audit-checkpoint.json from a clone "
            "of the configuration repository's remote) instead of the newest one kept.",
        )

    def handle(self, *args, **options):
        checked, chain_break = audit_verify_chain()
        if chain_break is not None:
            raise CommandError(
                f"Audit chain broken at record {chain_break.record_id}: {chain_break.reason} "
                f"({checked} records read)."
            )
        checkpoint, source = self._checkpoint(options["checkpoint"])
        if checkpoint is None:
            self.stdout.write(
                self.style.WARNING(
                    f"No audit checkpoint found ({source}): a removal of the newest records "
                    "could not be checked."
                )
            )
        else:
            problem = checkpoints.checkpoint_compare(checkpoint)
            if problem is not None:
                raise CommandError(f"Audit history does not match its checkpoint: {problem}")
            self.stdout.write(
                f"Matches the checkpoint of {checkpoint.at:%Y-%m-%d %H:%M:%S %Z} in {source} "
                f"({checkpoint.count} records up to #{checkpoint.last_id})."
            )
        self.stdout.write(self.style.SUCCESS(f"Audit chain intact: {checked} records verified."))

    def _checkpoint(self, path: Path | None) -> tuple[checkpoints.Checkpoint | None, str]:
        try:
            if path is not None:
                return checkpoints.Checkpoint.from_json(path.read_text()), str(path)
            store = checkpoints.checkpoint_store()
            if store is None:
                return None, "no checkpoint store is registered"
            return store.read_newest(), store.describe()
        except (OSError, ValueError) as exc:
            raise CommandError(f"Could not read the audit checkpoint: {exc}") from exc
