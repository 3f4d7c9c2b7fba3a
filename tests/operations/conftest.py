import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from opsportal.access import groups_load_defaults
from opsportal.operations.models import Operation
from opsportal.operations.services import operation_request
from opsportal.operations.tasks import execute_operation


@pytest.fixture
def operator(db):
    """An on-call engineer (the seeded role group), as the operations are requested by."""
    groups_load_defaults()
    user = get_user_model().objects.create_user("oscar", "oscar@example.com", "pw-oscar-123!")
    user.groups.add(Group.objects.get(name="On-call engineers"))
    return user


@pytest.fixture
def run_operation(operator):
    """Request an operation as a user would, then run its task for real (in this process)."""

    def run(kind: str, target, params: dict | None = None, reason: str = "test") -> Operation:
        operation = operation_request(
            kind=kind, target=target, params=params or {}, actor=operator, reason=reason
        )
        execute_operation.apply(args=[operation.pk])
        operation.refresh_from_db()
        return operation

    return run


@pytest.fixture
def role_user(db):
    """`role_user("On-call engineers")`: a new staff user in one seeded role group."""
    from django.contrib.auth.models import Group

    from opsportal.access import groups_load_defaults

    groups_load_defaults()

    def make(group: str):
        user = get_user_model().objects.create_user(
            f"user-{group.lower().replace(' ', '-')}", password="pw-role-123!", is_staff=True
        )
        user.groups.add(Group.objects.get(name=group))
        return user

    return make
