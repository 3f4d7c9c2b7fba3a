"""Windows: validation, starting with and without the pre-maintenance phase, suppression,
announcements, conflicts, permissions."""

import datetime as dt

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from maintenance.models import (
    AnnouncementKind,
    MaintenanceWindow,
    Phase,
    StepStatus,
    WindowStatus,
)
from maintenance.selectors import suppressing_window, systems_in_maintenance, windows_overlapping
from maintenance.services import (
    MaintenanceError,
    step_mark_done,
    step_skip,
    window_announce,
    window_finish,
    window_log_change,
    window_schedule,
    window_start,
    window_update,
    windows_announce_due,
)
from opsportal.audit.models import AuditOutcome, AuditRecord
from opsportal.people.models import Notification

pytestmark = pytest.mark.django_db


def audit_messages(window):
    return list(
        AuditRecord.objects.filter(
            object_type="maintenance.maintenancewindow", object_id=str(window.pk)
        ).values_list("outcome", "message")
    )


def finish_pre_phase(window, user):
    for step in window.steps.filter(phase=Phase.PRE):
        if step.automatic:
            step_mark_done(step=step, actor=user, note="Done by hand for this test")
        else:
            step_mark_done(step=step, actor=user)


@pytest.mark.parametrize(
    ("starts_in", "length", "field", "says"),
    [
        (dt.timedelta(hours=2), dt.timedelta(hours=-1), "ends_at", "set the end after the start"),
        (dt.timedelta(hours=2), dt.timedelta(0), "ends_at", "set the end after the start"),
        (dt.timedelta(days=-2), dt.timedelta(hours=2), "ends_at", "in the past"),
        (dt.timedelta(hours=-1), dt.timedelta(hours=3), "starts_at", "in the past"),
    ],
)
def test_impossible_windows_are_refused(schedule, starts_in, length, field, says):
    with pytest.raises(ValidationError) as refused:
        schedule(starts_in=starts_in, length=length)
    assert says in " ".join(refused.value.message_dict[field])
    assert not MaintenanceWindow.objects.exists()


def test_the_database_refuses_a_window_ending_before_it_starts(db):
    now = timezone.now()
    with pytest.raises(Exception, match="maintenance_window_ends_after_start"):
        MaintenanceWindow.objects.create(title="x", starts_at=now, ends_at=now)


def test_a_new_window_gets_the_runbook_checklist(schedule, superuser):
    window = schedule()
    assert [(s.phase, s.title) for s in window.steps.all()] == [
        ("pre", "Notify users"),
        ("pre", "Back up systems"),
        ("pre", "Prepare rollback plan"),
        ("during", "Follow maintenance checklist"),
        ("during", "Monitor system health"),
        ("during", "Document changes"),
        ("post", "Verify system health"),
        ("post", "Update documentation"),
        ("post", "Notify completion"),
    ]
    assert window.owner == superuser
    assert window.status == WindowStatus.PLANNED


def test_start_is_refused_without_rollback_plan_and_pre_phase(schedule, superuser):
    window = schedule()
    with pytest.raises(MaintenanceError) as refused:
        window_start(window=window, actor=superuser)
    assert "no rollback plan" in str(refused.value)
    assert "Notify users, Back up systems, Prepare rollback plan" in str(refused.value)
    window.refresh_from_db()
    assert window.status == WindowStatus.PLANNED
    assert audit_messages(window)[0][0] == AuditOutcome.FAILURE


def test_the_rollback_step_needs_a_rollback_plan(schedule, superuser):
    window = schedule()
    step = window.steps.get(title="Prepare rollback plan")
    with pytest.raises(MaintenanceError, match="Write the rollback plan"):
        step_mark_done(step=step, actor=superuser)


def test_start_with_an_override_reason_is_audited(schedule, superuser, redis_target):
    window = schedule(systems=[redis_target])
    window_start(window=window, actor=superuser, override_reason="Cache is down already")
    window.refresh_from_db()
    assert window.status == WindowStatus.IN_PROGRESS
    assert window.start_override_reason == "Cache is down already"
    outcome, message = next(r for r in audit_messages(window) if r[1].startswith("Started"))
    assert outcome == AuditOutcome.SUCCESS
    assert "Started despite" in message and "Cache is down already" in message


def test_suppression_covers_affected_systems_only_while_in_progress(
    schedule, superuser, redis_target, postgres_target
):
    window = schedule(systems=[redis_target], rollback_plan="Restore the snapshot")
    finish_pre_phase(window, superuser)
    assert suppressing_window(systems=[redis_target]) is None  # planned, not started
    window_start(window=window, actor=superuser)
    window.refresh_from_db()

    assert suppressing_window(systems=[redis_target]) == window
    assert suppressing_window(systems=[redis_target.pk, postgres_target.pk]) == window
    assert suppressing_window(systems=[postgres_target]) is None  # unaffected system
    assert suppressing_window(systems=[]) is None
    assert systems_in_maintenance() == {redis_target.pk: window}
    during = timezone.now()

    window_finish(window=window, actor=superuser, note="Upgraded to 7.2")
    assert suppressing_window(systems=[redis_target]) is None  # after the window
    assert systems_in_maintenance() == {}
    # Asked about a moment during the window, the answer is still that window.
    assert suppressing_window(systems=[redis_target], at=during) == window
    assert window.change_log.get().text == "Completed: Upgraded to 7.2"


def test_suppression_stops_at_the_planned_end_if_nobody_completes_the_window(
    schedule, superuser, redis_target
):
    window = schedule(
        systems=[redis_target], starts_in=dt.timedelta(0), length=dt.timedelta(minutes=30)
    )
    window_start(window=window, actor=superuser, override_reason="emergency")
    window.refresh_from_db()
    assert (
        suppressing_window(systems=[redis_target], at=window.ends_at - dt.timedelta(seconds=1))
        == window
    )
    assert suppressing_window(systems=[redis_target], at=window.ends_at) is None


def test_extending_a_window_in_progress_extends_suppression(schedule, superuser, redis_target):
    window = schedule(systems=[redis_target], starts_in=dt.timedelta(0))
    window_start(window=window, actor=superuser, override_reason="emergency")
    window.refresh_from_db()
    window.ends_at += dt.timedelta(hours=1)
    window_update(window=window, actor=superuser)
    window.refresh_from_db()
    assert window.suppress_until == window.ends_at
    assert window.status == WindowStatus.IN_PROGRESS
    window.starts_at -= dt.timedelta(hours=1)
    with pytest.raises(ValidationError, match="only the end"):
        window_update(window=window, actor=superuser)


def test_finish_requires_a_window_in_progress_and_a_note_for_rollback(schedule, superuser):
    window = schedule()
    with pytest.raises(MaintenanceError, match="only a window in progress"):
        window_finish(window=window, actor=superuser)
    window_start(window=window, actor=superuser, override_reason="test")
    with pytest.raises(MaintenanceError, match="what was rolled back"):
        window_finish(window=window, actor=superuser, rolled_back=True)
    window_finish(window=window, actor=superuser, rolled_back=True, note="Migration failed")
    window.refresh_from_db()
    assert window.status == WindowStatus.ROLLED_BACK


def test_announcements_at_lead_times_start_and_completion(schedule, superuser, devops_team):
    window = schedule(starts_in=dt.timedelta(hours=100), emails="users@example.com, ops@x.org")
    start = window.starts_at
    assert windows_announce_due(now=start - dt.timedelta(hours=80)) == 0
    assert windows_announce_due(now=start - dt.timedelta(hours=71)) == 1
    assert windows_announce_due(now=start - dt.timedelta(hours=70)) == 0  # sent once
    window.refresh_from_db()
    assert window.status == WindowStatus.ANNOUNCED
    assert windows_announce_due(now=start - dt.timedelta(hours=23)) == 1
    assert windows_announce_due(now=start - dt.timedelta(hours=22)) == 0
    lead = list(window.announcements.values_list("kind", "lead_hours"))
    assert lead == [(AnnouncementKind.LEAD, 72), (AnnouncementKind.LEAD, 24)]
    first = window.announcements.first()
    assert set(first.recipients.split("\n")) == {
        "devops@example.com",
        "users@example.com",
        "ops@x.org",
    }
    assert Notification.objects.filter(pk__in=first.notification_ids).count() == 3
    assert all(
        n.about == window for n in Notification.objects.filter(pk__in=first.notification_ids)
    )

    # Started at its planned time (starting 100 hours early is refused).
    window_start(window=window, actor=superuser, override_reason="test", now=start)
    window_finish(window=window, actor=superuser)
    kinds = list(window.announcements.values_list("kind", flat=True))
    assert kinds[-2:] == [AnnouncementKind.START, AnnouncementKind.COMPLETION]
    assert window_announce(window=window, kind=AnnouncementKind.COMPLETION) is None


def test_a_window_scheduled_late_gets_only_the_nearest_lead_announcement(schedule, devops_team):
    window = schedule(starts_in=dt.timedelta(hours=10))
    assert windows_announce_due() == 1
    assert list(window.announcements.values_list("lead_hours", flat=True)) == [24]


def test_overlapping_windows_on_the_same_system_are_found(schedule, redis_target, postgres_target):
    first = schedule(systems=[redis_target], starts_in=dt.timedelta(hours=2))
    overlapping = schedule(
        systems=[redis_target, postgres_target], starts_in=dt.timedelta(hours=2, minutes=30)
    )
    elsewhere = schedule(systems=[postgres_target], starts_in=dt.timedelta(hours=2))
    later = schedule(systems=[redis_target], starts_in=dt.timedelta(hours=3))
    assert list(windows_overlapping(window=first)) == [overlapping]
    assert set(windows_overlapping(window=overlapping)) == {first, elsewhere, later}
    assert elsewhere not in windows_overlapping(window=first)


def test_checklist_and_change_log_and_permissions(schedule, superuser):
    window = schedule()
    nobody = get_user_model().objects.create_user("viewer", password="x-12345678!")
    step = window.steps.get(title="Update documentation")
    with pytest.raises(PermissionDenied, match="conduct_maintenancewindow"):
        step_mark_done(step=step, actor=nobody)
    with pytest.raises(PermissionDenied):
        window_start(window=window, actor=nobody, override_reason="x")
    with pytest.raises(PermissionDenied):
        window_schedule(
            window=MaintenanceWindow(title="x", starts_at=window.starts_at, ends_at=window.ends_at),
            actor=nobody,
        )
    backup = window.steps.get(title="Back up systems")
    with pytest.raises(MaintenanceError, match="runs by itself"):
        step_mark_done(step=backup, actor=superuser)
    step_skip(step=backup, actor=superuser, reason="No database is touched")
    backup.refresh_from_db()
    assert backup.status == StepStatus.SKIPPED
    entry = window_log_change(window=window, actor=superuser, text="Raised max_connections")
    assert entry.author == superuser
    assert "Change documented: Raised max_connections" in [m for _, m in audit_messages(window)]


def test_in_maintenance_systems_query_is_indexed(
    schedule, superuser, redis_target, django_assert_num_queries
):
    window = schedule(systems=[redis_target], starts_in=dt.timedelta(0))
    window_start(window=window, actor=superuser, override_reason="emergency")
    with django_assert_num_queries(1):
        found = systems_in_maintenance()
    assert found[redis_target.pk].title == window.title
