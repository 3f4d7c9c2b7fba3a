from django.db import models


class Heartbeat(models.Model):
    """The last time a periodic process proved it is alive (beat, via a scheduled task)."""

    name = models.CharField(max_length=50, unique=True)
    at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} at {self.at:%Y-%m-%d %H:%M:%S}"
