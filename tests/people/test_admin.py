"""The people admin: webhook URLs are write-only secrets, and failed notifications can be
retried by those allowed to."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.urls import reverse

from opsportal.access import groups_load_defaults
from opsportal.audit.models import AuditRecord
from opsportal.celery import app as celery_app
from opsportal.people.models import (
    Notification,
    NotificationStatus,
    Responsibility,
    WebhookChannel,
)
from opsportal.people.services import notify
from tests.people.conftest import WEBHOOK_TOKEN
from tests.realsystems import free_port


@pytest.fixture
def failed_webhook_notification(
    on_call_team, django_capture_on_commit_callbacks, settings
) -> Notification:
    """A webhook at a closed port, notified once with one attempt allowed: failed."""
    settings.NOTIFICATION_MAX_ATTEMPTS = 1
    channel = WebhookChannel.objects.create(
        name="ops-alerts",
        team=on_call_team,
        url=f"http://127.0.0.1:{free_port()}/services/T1/B1/{WEBHOOK_TOKEN}",
    )
    celery_app.conf.task_always_eager = True
    try:
        with django_capture_on_commit_callbacks(execute=True):
            notifications = notify(responsibility=Responsibility.ON_CALL, subject="Paging test")
    finally:
        celery_app.conf.task_always_eager = False
    notification = Notification.objects.get(pk__in=[n.pk for n in notifications], webhook=channel)
    assert notification.status == NotificationStatus.FAILED
    return notification


def test_webhook_url_is_never_shown_in_the_admin(
    staff_client, on_call_team, failed_webhook_notification
):
    channel = failed_webhook_notification.webhook
    audit = AuditRecord.objects.filter(object_type="people.webhookchannel").latest("id")
    pages = [
        reverse("admin:people_webhookchannel_changelist"),
        reverse("admin:people_webhookchannel_change", args=[channel.pk]),
        reverse("admin:people_webhookchannel_history", args=[channel.pk]),
        reverse("admin:people_webhookchannel_delete", args=[channel.pk]),
        reverse("admin:people_team_change", args=[on_call_team.pk]),
        reverse("admin:people_notification_changelist"),
        reverse("admin:people_notification_change", args=[failed_webhook_notification.pk]),
        reverse("admin:audit_auditrecord_changelist") + "?q=ops-alerts",
        reverse("admin:audit_auditrecord_change", args=[audit.pk]),
        reverse("admin:audit_auditrecord_export"),
    ]
    for url in pages:
        response = staff_client.get(url)
        assert response.status_code == 200, url
        content = b"".join(response) if response.streaming else response.content
        assert WEBHOOK_TOKEN.encode() not in content, url
        assert b"/services/T1/B1/" not in content, url
    # The failure itself is visible, by the channel's name.
    response = staff_client.get(reverse("admin:people_notification_changelist"))
    assert b"Webhook ops-alerts is not reachable (ConnectionError)." in response.content


def test_adding_a_webhook_in_the_admin_stores_the_url_and_never_shows_it_again(
    staff_client, on_call_team
):
    url = f"https://hooks.slack.example.com/services/T9/B9/{WEBHOOK_TOKEN}"
    response = staff_client.post(
        reverse("admin:people_webhookchannel_add"),
        {"name": "incident-room", "team": on_call_team.pk, "format": "slack", "url": url},
        follow=True,
    )
    assert response.status_code == 200
    assert WEBHOOK_TOKEN.encode() not in response.content
    channel = WebhookChannel.objects.get(name="incident-room")
    assert channel.url == url

    # Saving the form again with the URL left empty keeps the stored URL.
    change_url = reverse("admin:people_webhookchannel_change", args=[channel.pk])
    page = staff_client.get(change_url)
    assert WEBHOOK_TOKEN.encode() not in page.content
    assert b"A value is stored." in page.content
    staff_client.post(
        change_url,
        {"name": "incident-room", "team": on_call_team.pk, "format": "generic", "url": ""},
    )
    channel.refresh_from_db()
    assert (channel.format, channel.url) == ("generic", url)

    # The audit record of the creation masks the URL.
    created = AuditRecord.objects.get(
        object_type="people.webhookchannel", object_id=str(channel.pk), action="create"
    )
    assert WEBHOOK_TOKEN not in str(created.changes)


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("", b"This field is required."),
        (f"ftp://files.example.com/{WEBHOOK_TOKEN}", b"Enter an http:// or https:// URL."),
    ],
)
def test_a_new_webhook_needs_an_http_url(staff_client, on_call_team, url, error):
    response = staff_client.post(
        reverse("admin:people_webhookchannel_add"),
        {"name": "bad", "team": on_call_team.pk, "format": "slack", "url": url},
    )
    assert response.status_code == 200
    assert error in response.content
    assert WEBHOOK_TOKEN.encode() not in response.content  # not echoed into the form
    assert not WebhookChannel.objects.filter(name="bad").exists()


def _retry(client, notification):
    return client.post(
        reverse("admin:people_notification_changelist"),
        {"action": "retry_now", "_selected_action": [notification.pk]},
        follow=True,
    )


def test_retry_now_gives_a_failed_notification_fresh_attempts_and_is_audited(
    staff_client, superuser, failed_webhook_notification, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as dispatched:
        response = _retry(staff_client, failed_webhook_notification)
    assert b"1 failed notification(s) queued again." in response.content
    assert len(dispatched) == 1  # handed to the worker after commit

    failed_webhook_notification.refresh_from_db()
    assert failed_webhook_notification.status == NotificationStatus.PENDING
    assert failed_webhook_notification.attempts == 0
    record = AuditRecord.objects.get(
        object_type="people.notification", object_id=str(failed_webhook_notification.pk)
    )
    assert (record.actor, record.outcome) == (superuser, "requested")


def test_viewers_cannot_retry_notifications(client, failed_webhook_notification):
    groups_load_defaults()
    viewer = get_user_model().objects.create_user("viewer", password="pw-viewer-123!")
    viewer.is_staff = True
    viewer.save()
    viewer.groups.add(Group.objects.get(name="Viewers"))
    client.force_login(viewer)

    changelist = client.get(reverse("admin:people_notification_changelist"))
    assert changelist.status_code == 200
    assert b"retry_now" not in changelist.content
    _retry(client, failed_webhook_notification)
    failed_webhook_notification.refresh_from_db()
    assert failed_webhook_notification.status == NotificationStatus.FAILED

    on_call = get_user_model().objects.create_user("oncall", password="pw-oncall-123!")
    on_call.is_staff = True
    on_call.save()
    on_call.groups.add(Group.objects.get(name="On-call engineers"))
    client.force_login(on_call)
    _retry(client, failed_webhook_notification)
    failed_webhook_notification.refresh_from_db()
    assert failed_webhook_notification.status == NotificationStatus.PENDING


def test_rotation_changelist_shows_who_is_on_call_in_a_constant_number_of_queries(
    rotation, staff_client, django_assert_max_num_queries
):
    import datetime as dt

    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from opsportal.people.models import Contact, OnCallOverride, OnCallRotation, RotationMember

    url = reverse("admin:people_oncallrotation_changelist")
    with CaptureQueriesContext(connection) as one_rotation:
        assert staff_client.get(url).status_code == 200
    team, now = rotation.team, timezone.now()
    for number in range(6):
        extra = OnCallRotation.objects.create(
            name=f"Secondary {number}", team=team, shift_hours=24, handoff_at=rotation.handoff_at
        )
        person = Contact.objects.create(name=f"Person {number}", team=team)
        RotationMember.objects.create(rotation=extra, contact=person, position=0)
        if number % 2:
            OnCallOverride.objects.create(
                rotation=extra,
                contact=Contact.objects.get(name="Alice"),
                starts_at=now - dt.timedelta(hours=1),
                ends_at=now + dt.timedelta(hours=1),
            )
    with django_assert_max_num_queries(len(one_rotation.captured_queries)):
        page = staff_client.get(url).content.decode()
    # Each row still names the right person: the override where one is in force.
    assert page.count(">Alice<") >= 3
    assert "Person 0" in page and "Person 2" in page


# --- on-call overrides: a swap recorded by the on-call engineers themselves ----------------

OVERRIDE_ADD = "/admin/people/oncalloverride/add/"


def _override_form(rotation, contact, starts_at, ends_at, reason="Swap with Alice") -> dict:
    return {
        "rotation": rotation.pk,
        "contact": contact.pk,
        "starts_at_0": f"{starts_at:%Y-%m-%d}",
        "starts_at_1": f"{starts_at:%H:%M:%S}",
        "ends_at_0": f"{ends_at:%Y-%m-%d}",
        "ends_at_1": f"{ends_at:%H:%M:%S}",
        "reason": reason,
    }


def test_an_on_call_engineer_records_a_swap_and_it_is_audited(rotation):
    import datetime as dt

    from django.utils import timezone

    from opsportal.people.models import Contact, OnCallOverride
    from opsportal.people.selectors import on_call_by_rotation
    from tests.systems.conftest import client_in_group

    groups_load_defaults()
    client = client_in_group("On-call engineers")
    before = {f: getattr(rotation, f) for f in ("name", "team_id", "shift_hours", "handoff_at")}
    bob = Contact.objects.get(name="Bob")
    now = timezone.now().replace(microsecond=0)
    # Chosen from the rotation's page: the rotation comes filled in.
    rotation_page = client.get(reverse("admin:people_oncallrotation_change", args=[rotation.pk]))
    assert f'href="{OVERRIDE_ADD}?rotation={rotation.pk}"' in rotation_page.content.decode()
    page = client.get(OVERRIDE_ADD, {"rotation": rotation.pk})
    assert page.status_code == 200
    assert page.context["adminform"].form.initial["rotation"] == str(rotation.pk)

    response = client.post(
        OVERRIDE_ADD,
        _override_form(rotation, bob, now - dt.timedelta(hours=1), now + dt.timedelta(hours=8)),
    )
    assert response.status_code == 302, response.status_code
    override = OnCallOverride.objects.get(rotation=rotation)
    assert override.contact == bob and override.reason == "Swap with Alice"
    assert on_call_by_rotation(rotations=[rotation], at=now)[rotation.pk] == bob
    engineer = get_user_model().objects.get(username="user-on-call-engineers")
    assert AuditRecord.objects.filter(
        object_type="people.oncalloverride", object_id=str(override.pk), actor=engineer
    ).exists()

    # Moved later: the change page saves too, and is audited again.
    change = reverse("admin:people_oncalloverride_change", args=[override.pk])
    later = now + dt.timedelta(hours=2)
    response = client.post(change, _override_form(rotation, bob, now, later, "Shorter swap"))
    assert response.status_code == 302, response.status_code
    override.refresh_from_db()
    assert override.ends_at == later and override.reason == "Shorter swap"
    assert (
        AuditRecord.objects.filter(
            object_type="people.oncalloverride", object_id=str(override.pk), actor=engineer
        ).count()
        == 2
    )
    # The rotation itself is not theirs to change.
    rotation.refresh_from_db()
    assert {f: getattr(rotation, f) for f in before} == before
    assert (
        client.get(reverse("admin:people_oncallrotation_change", args=[rotation.pk])).context[
            "has_change_permission"
        ]
        is False
    )


def test_an_override_must_end_after_it_starts(rotation):
    import datetime as dt

    from django.utils import timezone

    from opsportal.people.models import Contact, OnCallOverride
    from tests.systems.conftest import client_in_group

    groups_load_defaults()
    client = client_in_group("On-call engineers")
    now = timezone.now().replace(microsecond=0)
    form = _override_form(
        rotation, Contact.objects.get(name="Bob"), now, now - dt.timedelta(hours=1)
    )
    response = client.post(OVERRIDE_ADD, form)
    assert response.status_code == 200
    assert "must end after it starts" in str(response.context["adminform"].form.errors)
    assert not OnCallOverride.objects.exists()


@pytest.mark.parametrize("role", ["Viewers", "Database admins", "Security team"])
def test_roles_without_the_override_permissions_cannot_record_one(role, rotation):
    import datetime as dt

    from django.utils import timezone

    from opsportal.people.models import Contact, OnCallOverride
    from tests.systems.conftest import client_in_group

    groups_load_defaults()
    client = client_in_group(role)
    now = timezone.now().replace(microsecond=0)
    form = _override_form(
        rotation, Contact.objects.get(name="Bob"), now, now + dt.timedelta(hours=1)
    )
    assert client.get(OVERRIDE_ADD).status_code == 403
    assert client.post(OVERRIDE_ADD, form).status_code == 403
    assert not OnCallOverride.objects.exists()
