import datetime as dt

import pytest
from django.utils import timezone

from maintenance.models import MaintenanceWindow, WindowKind
from maintenance.services import window_schedule
from opsportal.people.models import Responsibility, Team


@pytest.fixture
def devops_team(db):
    return Team.objects.create(
        name="DevOps team", responsibility=Responsibility.DEVOPS, email="devops@example.com"
    )


@pytest.fixture
def schedule(superuser):
    """Schedule a window through the service, as the admin does."""

    def make(
        *, systems=(), starts_in=dt.timedelta(hours=2), length=dt.timedelta(hours=1), **fields
    ):
        starts_at = timezone.now() + starts_in
        fields.setdefault("title", "Upgrade PostgreSQL")
        fields.setdefault("kind", WindowKind.AD_HOC)
        window = MaintenanceWindow(starts_at=starts_at, ends_at=starts_at + length, **fields)
        return window_schedule(window=window, systems=systems, actor=superuser)

    return make
