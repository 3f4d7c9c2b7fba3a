from django.db import models


class Heartbeat(models.Model):
    """The last time a periodic process proved it is alive (beat, via a scheduled task)."""

    name = models.CharField(max_length=50, unique=True)
    at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} at {self.at:%Y-%m-%d %H:%M:%S}"


class StatusReport(models.Model):
    """The newest result of the scheduled detailed checks (one row).

    Anonymous callers of /health/detailed get their overall status from here, so an outsider
    cannot make the portal connect to every registered system on each request."""

    checked_at = models.DateTimeField()
    ok = models.BooleanField()
    checks = models.JSONField(default=list)

    def __str__(self) -> str:
        return f"{'ok' if self.ok else 'failing'} at {self.checked_at:%Y-%m-%d %H:%M:%S}"
