from django.utils import timezone

from opsportal.health.models import Heartbeat
from opsportal.schedules import periodic_task_ensure


def heartbeat_record(*, name: str) -> None:
    Heartbeat.objects.update_or_create(name=name, defaults={"at": timezone.now()})


def health_load_defaults() -> None:
    periodic_task_ensure(
        name="Beat heartbeat",
        task="health.beat_heartbeat",
        every_seconds=30,
        description="Proves beat, broker and a worker are alive (checked by /health/detailed).",
    )
    periodic_task_ensure(
        name="Check registered systems",
        task="systems.check_due",
        every_seconds=10,
        description="Checks each system whose own check interval has elapsed.",
    )
    periodic_task_ensure(
        name="Retry notifications",
        task="people.sweep_notifications",
        every_seconds=60,
        description="Delivers notifications whose retry is due or whose message was lost.",
    )
