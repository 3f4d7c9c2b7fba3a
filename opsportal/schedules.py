"""Periodic tasks as rows of django-celery-beat, so they are editable in the admin."""

from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask


def periodic_task_ensure(
    *,
    name: str,
    task: str,
    every_seconds: int | None = None,
    crontab: dict[str, str] | None = None,
    description: str = "",
) -> PeriodicTask:
    """Create the periodic task if it does not exist; never overwrite an operator's edits."""
    existing = PeriodicTask.objects.filter(name=name).first()
    if existing:
        return existing
    schedule: dict[str, object] = {}
    if every_seconds is not None:
        schedule["interval"], _ = IntervalSchedule.objects.get_or_create(
            every=every_seconds, period=IntervalSchedule.SECONDS
        )
    elif crontab is not None:
        schedule["crontab"], _ = CrontabSchedule.objects.get_or_create(
            timezone="UTC",
            **{
                "minute": "0",
                "hour": "*",
                "day_of_week": "*",
                "day_of_month": "*",
                "month_of_year": "*",
                **crontab,
            },
        )
    else:
        raise ValueError("A periodic task needs every_seconds or crontab.")
    return PeriodicTask.objects.create(name=name, task=task, description=description, **schedule)
