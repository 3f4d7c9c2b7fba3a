"""The operations list as the seeded role groups use it: cancelling a queued operation
(found by the role matrix: only superusers could)."""

from __future__ import annotations

import pytest
from django.contrib import messages

from opsportal.audit.models import AuditRecord
from opsportal.operations.models import OperationStatus
from opsportal.operations.services import operation_request
from tests.signin import TwoFactorClient

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/operations/operation/"


@pytest.fixture
def queued_cache_clear(redis_target, operator):
    # Requested, never dispatched: the test's transaction is never committed.
    return operation_request(
        kind="cache_clear", target=redis_target, params={}, actor=operator, reason="stale keys"
    )


def signed_in(user) -> TwoFactorClient:
    client = TwoFactorClient()
    client.force_login(user)
    return client


def cancel(client, operation):
    return client.post(
        CHANGELIST, {"action": "cancel_queued", "_selected_action": [operation.pk]}, follow=True
    )


@pytest.mark.parametrize(
    ("role", "offered"),
    [
        ("Viewers", False),
        ("On-call engineers", True),
        ("Database admins", True),
        ("DevOps", True),
        ("Security team", True),
    ],
)
def test_cancel_is_offered_to_roles_that_run_operations(role, offered, role_user):
    page = signed_in(role_user(role)).get(CHANGELIST)
    assert page.status_code == 200
    form = page.context["action_form"]  # None when the list offers no action at all
    actions = {name for name, _ in form.fields["action"].choices} if form else set()
    assert ("cancel_queued" in actions) is offered


def test_an_on_call_engineer_cancels_a_queued_cache_clear(queued_cache_clear, role_user):
    engineer = role_user("On-call engineers")
    response = cancel(signed_in(engineer), queued_cache_clear)
    assert "Cancelled 1 queued operation" in response.content.decode()
    queued_cache_clear.refresh_from_db()
    assert queued_cache_clear.status == OperationStatus.CANCELLED
    assert AuditRecord.objects.filter(
        object_type="operations.operation",
        object_id=str(queued_cache_clear.pk),
        actor=engineer,
        message__contains="Cancelled by",
    ).exists()


def test_a_role_that_may_not_run_the_kind_is_told_and_nothing_is_cancelled(
    queued_cache_clear, role_user
):
    response = cancel(signed_in(role_user("Database admins")), queued_cache_clear)
    shown = [str(m) for m in messages.get_messages(response.wsgi_request)]
    assert any("operations.run_cache_clear" in m for m in shown), shown
    assert "Cancelled 0 queued operations." in shown
    queued_cache_clear.refresh_from_db()
    assert queued_cache_clear.status == OperationStatus.QUEUED


def test_viewers_cannot_cancel(queued_cache_clear, role_user):
    cancel(signed_in(role_user("Viewers")), queued_cache_clear)
    queued_cache_clear.refresh_from_db()
    assert queued_cache_clear.status == OperationStatus.QUEUED
