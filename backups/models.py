from django.db import models


class BackupPlan(models.Model):
    """How and when one PostgreSQL database is backed up (the runbook: daily at 02:00 UTC)."""

    database = models.OneToOneField(
        "systems.PostgresDatabase", on_delete=models.PROTECT, related_name="backup_plan"
    )
    enabled = models.BooleanField(default=True)

    def __str__(self) -> str:
        return f"Backups of {self.database}"
