"""Who may record a recurring task as done and work a maintenance window, through the admin
as the seeded role groups (found by the role matrix, tests/test_role_matrix.py)."""

from __future__ import annotations

import pytest
from django.contrib import messages
from django.urls import reverse

from maintenance.models import (
    ChangeLogEntry,
    OccurrenceStatus,
    RecurringTask,
    TaskOccurrence,
    WindowStatus,
)
from maintenance.services import task_generate_occurrences
from opsportal.audit.models import AuditRecord
from opsportal.defaults import load_defaults
from tests.systems.conftest import client_in_group

pytestmark = pytest.mark.django_db

ROLES = ["Viewers", "On-call engineers", "Database admins", "DevOps", "Security team"]


@pytest.fixture
def occurrence(db) -> TaskOccurrence:
    """An open due date of one of the runbook's security tasks, seeded by load_defaults."""
    load_defaults()
    task = RecurringTask.objects.order_by("name").first()
    task_generate_occurrences(task=task)
    return task.occurrences.filter(status=OccurrenceStatus.OPEN).order_by("due_at").first()


def change_url(occurrence: TaskOccurrence) -> str:
    return reverse("admin:maintenance_taskoccurrence_change", args=[occurrence.pk])


def test_the_security_team_records_a_security_task_as_done(occurrence):
    client = client_in_group("Security team")
    page = client.get(change_url(occurrence))
    assert page.status_code == 200
    # Only the completion fields are editable; the due date and status stay read-only.
    assert set(page.context["adminform"].form.fields) == {"notes", "evidence"}
    response = client.post(change_url(occurrence), {"notes": "Patched the base images."})
    assert response.status_code == 302, response.status_code
    occurrence.refresh_from_db()
    assert occurrence.status == OccurrenceStatus.DONE
    assert occurrence.completed_by.username == "user-security-team"
    assert occurrence.notes == "Patched the base images."
    assert AuditRecord.objects.filter(
        object_type="maintenance.taskoccurrence",
        object_id=str(occurrence.pk),
        actor=occurrence.completed_by,
        message__startswith="Done. Patched the base images.",
    ).exists()


@pytest.mark.parametrize("role", ["Viewers", "On-call engineers", "Database admins", "DevOps"])
def test_roles_without_the_complete_permission_cannot_record_it(role, occurrence):
    client = client_in_group(role)
    assert client.get(change_url(occurrence)).status_code == 200  # they may look
    response = client.post(change_url(occurrence), {"notes": "Done, honestly."})
    assert response.status_code == 403
    occurrence.refresh_from_db()
    assert occurrence.status == OccurrenceStatus.OPEN and occurrence.notes == ""


@pytest.mark.parametrize("who", ["superuser", "Security team"])
def test_saving_without_notes_or_evidence_is_a_form_error_not_403(who, occurrence, request):
    client = request.getfixturevalue("staff_client") if who == "superuser" else client_in_group(who)
    response = client.post(change_url(occurrence), {"notes": "  "})
    assert response.status_code == 200, response.status_code
    errors = response.context["adminform"].form.errors
    assert "Add notes or attach evidence" in " ".join(e for es in errors.values() for e in es)
    occurrence.refresh_from_db()
    assert occurrence.status == OccurrenceStatus.OPEN and occurrence.completed_at is None
    assert not AuditRecord.objects.filter(
        object_type="maintenance.taskoccurrence", object_id=str(occurrence.pk)
    ).exists()


def test_saving_a_done_occurrence_again_says_so_on_the_form(occurrence):
    client = client_in_group("Security team")
    client.post(change_url(occurrence), {"notes": "First."})
    response = client.post(change_url(occurrence), {"notes": "Second."})
    assert response.status_code == 200
    assert "already done" in str(response.context["adminform"].form.errors)
    occurrence.refresh_from_db()
    assert occurrence.notes == "First."


# --- maintenance window actions -----------------------------------------------------------

# What each action needs, as the service checks it.
WINDOW_ACTIONS = {
    "start": "maintenance.conduct_maintenancewindow",
    "complete": "maintenance.conduct_maintenancewindow",
    "rollback": "maintenance.conduct_maintenancewindow",
    "log": "maintenance.conduct_maintenancewindow",
    "cancel": "maintenance.change_maintenancewindow",
}


@pytest.fixture
def window(db, schedule):
    load_defaults()
    return schedule()


def action_url(window, action: str) -> str:
    return reverse("admin:maintenance_maintenancewindow_action", args=[window.pk, action])


def refusals(response) -> list[str]:
    return [
        str(m) for m in messages.get_messages(response.wsgi_request) if m.level == messages.ERROR
    ]


@pytest.mark.parametrize("role", ROLES)
def test_a_window_action_page_is_shown_only_to_roles_that_may_perform_it(role, window):
    client = client_in_group(role)
    for action, permission in WINDOW_ACTIONS.items():
        page = client.get(action_url(window, action))
        if role == "DevOps":  # the role that conducts maintenance windows
            assert page.status_code == 200, (action, page.status_code)
            continue
        # Refused the same way as the POST: back to the window, with the permission named.
        assert page.status_code == 302, (action, page.status_code)
        assert page["Location"] == reverse(
            "admin:maintenance_maintenancewindow_change", args=[window.pk]
        )
        assert any(permission in m for m in refusals(page)), (action, refusals(page))
        posted = client.post(action_url(window, action), {"text": "Anyway"})
        assert posted.status_code == 302
        assert any(permission in m for m in refusals(posted)), (action, refusals(posted))
    window.refresh_from_db()
    assert window.status == WindowStatus.PLANNED
    assert not ChangeLogEntry.objects.filter(window=window).exists()


@pytest.mark.parametrize("role", ["Viewers", "DevOps"])
def test_an_unknown_window_action_is_not_found(role, window):
    client = client_in_group(role)
    assert client.get(action_url(window, "explode")).status_code == 404
    assert client.post(action_url(window, "explode"), {"text": "x"}).status_code == 404


def test_recorded_by_someone_else_after_the_form_check_is_reported_not_403(occurrence, superuser):
    """The race the form cannot see: another person records the occurrence between this
    form's check and its save. The page says so; it is no error page and nothing changes."""
    from django.contrib.admin.sites import site
    from django.contrib.messages.storage.fallback import FallbackStorage
    from django.test import RequestFactory

    from maintenance.services import occurrence_complete

    model_admin = site._registry[TaskOccurrence]
    url = change_url(occurrence)
    request = RequestFactory().post(url, {"notes": "Mine."})
    request.user = superuser
    request.session = {}
    request._messages = FallbackStorage(request)
    form = model_admin.get_form(request, occurrence)(request.POST, instance=occurrence)
    assert form.is_valid(), form.errors  # checked while it was still open
    occurrence_complete(
        occurrence=TaskOccurrence.objects.get(pk=occurrence.pk), actor=superuser, notes="Theirs."
    )
    model_admin.save_model(request, form.save(commit=False), form, True)
    assert model_admin.log_change(request, occurrence, "Changed notes.") is None
    response = model_admin.response_change(request, occurrence)
    assert response.status_code == 302 and response["Location"] == url
    assert [str(m) for m in request._messages] == ["This occurrence is already done."]
    occurrence.refresh_from_db()
    assert occurrence.notes == "Theirs."
