"""Escalation until acknowledged: the runbook's default policies, pages sent at their time
by the sweeper (driven here with explicit times instead of waiting), each at most once,
late ones saying so, and nothing more once someone acknowledges or resolves."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from django.db import IntegrityError, connection, transaction

from incidents.models import (
    EscalationPage,
    EscalationPolicy,
    EscalationStatus,
    EscalationStep,
    EscalationTarget,
    Incident,
    PageStatus,
    Severity,
)
from incidents.services import (
    incident_acknowledge,
    incident_escalate,
    incident_open,
    incident_resolve,
)
from incidents.services.escalation import (
    EscalationRefused,
    escalation_page_send,
    escalation_plan,
    escalation_policy_check,
    escalations_sweep,
)
from incidents.tasks import send_escalation_page, sweep_escalations
from opsportal.access import groups_load_defaults
from opsportal.people.models import Notification, NotificationChannelKind, Responsibility
from tests.systems.conftest import client_in_group

MINUTE = dt.timedelta(minutes=1)


def open_sev(severity: str = Severity.SEV1, title: str = "Checkout API down") -> Incident:
    return incident_open(title=title, severity=severity, category="other")


def emails_to(address: str) -> list[Notification]:
    return list(
        Notification.objects.filter(
            channel=NotificationChannelKind.EMAIL, recipient=address
        ).order_by("id")
    )


def timeline(incident: Incident) -> list[str]:
    return list(incident.timeline.order_by("at", "id").values_list("message", flat=True))


# ---------------------------------------------------------------- policies


def test_the_default_policies_follow_the_runbook(paging):
    urgent = EscalationPolicy.objects.get(severity=Severity.SEV1)
    plan = escalation_plan(policy=urgent)
    assert [p.offset for p in plan] == [m * MINUTE for m in (0, 5, 20, 35, 50, 65)]
    assert [p.step.target for p in plan] == [
        EscalationTarget.ON_CALL,
        EscalationTarget.ON_CALL,
        *[EscalationTarget.TEAM] * 4,
    ]
    assert plan[2].step.team == paging["teams"][Responsibility.DEVOPS]
    assert EscalationPolicy.objects.get(severity=Severity.SEV2).steps.count() == 3
    for severity in (Severity.SEV3, Severity.SEV4):
        [only] = escalation_plan(policy=EscalationPolicy.objects.get(severity=severity))
        assert only.step.target == EscalationTarget.ON_CALL


def test_policies_without_steps_with_a_loop_or_no_wait_are_refused(paging):
    team = paging["teams"][Responsibility.ON_CALL]
    empty = EscalationPolicy.objects.create(name="Empty", team=team, active=False)
    with pytest.raises(EscalationRefused, match="has no steps"):
        escalation_policy_check(policy=empty)

    first = EscalationPolicy.objects.create(name="First", team=team, active=False)
    second = EscalationPolicy.objects.create(name="Second", team=team, active=False)
    EscalationStep.objects.create(
        policy=first, position=1, target=EscalationTarget.POLICY, next_policy=second
    )
    EscalationStep.objects.create(
        policy=second, position=1, target=EscalationTarget.POLICY, next_policy=first
    )
    with pytest.raises(EscalationRefused, match=r"loop.*'First' → 'Second' → 'First'"):
        escalation_policy_check(policy=first)
    itself = EscalationPolicy.objects.create(name="Itself", team=team, active=False)
    EscalationStep.objects.create(
        policy=itself, position=1, target=EscalationTarget.POLICY, next_policy=itself
    )
    with pytest.raises(EscalationRefused, match="loop"):
        escalation_policy_check(policy=itself)

    for wait in (0, -5):
        step = EscalationStep(policy=empty, position=1, target="on_call", wait_minutes=wait)
        with pytest.raises(EscalationRefused, match="must wait more than 0 minutes"):
            escalation_policy_check(policy=empty, steps=[step])
        # The database refuses it too, whoever writes the row.
        with pytest.raises(IntegrityError), transaction.atomic():
            step.save()


def test_the_admin_refuses_a_policy_with_no_wait_and_devops_may_save_a_good_one(paging):
    groups_load_defaults()
    devops = client_in_group("DevOps")
    team = paging["teams"][Responsibility.ON_CALL]

    def post(wait: str, name: str):
        return devops.post(
            "/admin/incidents/escalationpolicy/add/",
            {
                "name": name,
                "team": team.pk,
                "severity": "",
                "active": "",
                "steps-TOTAL_FORMS": "1",
                "steps-INITIAL_FORMS": "0",
                "steps-0-position": "1",
                "steps-0-target": "on_call",
                "steps-0-email": "on",
                "steps-0-wait_minutes": wait,
                "steps-0-repeat": "0",
            },
        )

    refused = post("0", "Night shift")
    assert refused.status_code == 200
    assert "must wait more than 0 minutes" in refused.content.decode()
    assert not EscalationPolicy.objects.filter(name="Night shift").exists()
    assert post("10", "Night shift").status_code == 302
    assert EscalationPolicy.objects.get(name="Night shift").steps.get().wait_minutes == 10


# ---------------------------------------------------------------- timing


def test_a_sev1_nobody_acknowledges_pages_the_on_call_again_then_devops(paging):
    incident = open_sev()
    escalation = incident.escalations.get()
    t0 = escalation.started_at
    pages = list(escalation.pages.order_by("sequence"))
    assert [p.due_at - t0 for p in pages] == [m * MINUTE for m in (0, 5, 20, 35, 50, 65)]
    assert [p.status for p in pages] == [PageStatus.SENT] + [PageStatus.SCHEDULED] * 5
    assert len(emails_to("alice@example.com")) == 1
    assert len(emails_to("alice@pager.example.com")) == 1

    escalations_sweep(now=t0 + 5 * MINUTE - dt.timedelta(seconds=1))
    assert len(emails_to("alice@example.com")) == 1  # not yet

    escalations_sweep(now=t0 + 5 * MINUTE)
    assert len(emails_to("alice@example.com")) == 2  # the same person again
    assert not emails_to("dave@example.com")

    escalations_sweep(now=t0 + 20 * MINUTE)
    assert len(emails_to("dave@example.com")) == 1  # then the DevOps team
    assert emails_to("dave@example.com")[0].subject.startswith("[SEV1] Not acknowledged yet")
    for minutes in (35, 50, 65):
        escalations_sweep(now=t0 + minutes * MINUTE)
    assert len(emails_to("dave@example.com")) == 4  # repeated 3 times
    escalation.refresh_from_db()
    assert escalation.status == EscalationStatus.EXHAUSTED
    assert escalations_sweep(now=t0 + 3 * 60 * MINUTE)["redispatched"] == 0

    messages = timeline(incident)
    steps = [m for m in messages if m.startswith("Escalation page")]
    assert len(steps) == 6
    assert steps[0].startswith("Escalation page 1 of 6 (SEV1 (urgent) step 1: On-call engineers")
    assert "Alice by email (alice@example.com, alice@pager.example.com)" in steps[0]
    assert "Dave by email (dave@example.com)" in steps[2]
    assert "DevOps team by email (devops@example.com)" in steps[2]
    assert not any("late" in m for m in steps)
    assert "nobody has acknowledged yet" in messages[-1]


def test_acknowledging_after_the_first_page_stops_every_later_one(paging):
    incident = open_sev()
    escalation = incident.escalations.get()
    t0 = escalation.started_at
    incident_acknowledge(incident=incident, actor=paging["erin"])

    escalation.refresh_from_db()
    assert escalation.status == EscalationStatus.ACKNOWLEDGED
    assert escalation.stopped_by == "erin"
    assert (
        list(escalation.pages.values_list("status", flat=True))
        == [PageStatus.SENT] + [PageStatus.CANCELLED] * 5
    )
    for minutes in (5, 20, 35, 50, 65, 600):
        escalations_sweep(now=t0 + minutes * MINUTE)
    pages_to_alice = [n for n in emails_to("alice@example.com") if "Acknowledged" not in n.subject]
    assert len(pages_to_alice) == 1
    assert not emails_to("dave@example.com")
    assert any("stopped (acknowledged by erin); 5 planned page(s)" in m for m in timeline(incident))


def test_resolving_stops_the_escalation_too(paging):
    incident = open_sev(Severity.SEV2)
    escalation = incident.escalations.get()
    incident_resolve(incident=incident, actor=paging["erin"], resolution="Restarted the API")
    escalation.refresh_from_db()
    assert escalation.status == EscalationStatus.RESOLVED
    assert escalations_sweep(now=escalation.started_at + 60 * MINUTE)["redispatched"] == 0
    assert len(emails_to("alice@example.com")) == 2  # the page and "resolved by erin"
    assert emails_to("alice@example.com")[1].subject.startswith("[SEV2] Resolved by erin")


def test_a_sev3_pages_the_on_call_once(paging):
    incident = open_sev(Severity.SEV3)
    escalation = incident.escalations.get()
    assert escalation.status == EscalationStatus.EXHAUSTED
    assert len(emails_to("alice@example.com")) == 1
    escalations_sweep(now=escalation.started_at + 600 * MINUTE)
    assert len(emails_to("alice@example.com")) == 1


def test_raising_the_severity_replaces_the_escalation(paging):
    incident = open_sev(Severity.SEV3)
    incident_escalate(incident=incident, severity=Severity.SEV1, actor=paging["erin"])
    first, second = incident.escalations.order_by("started_at", "id")
    assert first.status == EscalationStatus.EXHAUSTED
    assert second.status == EscalationStatus.ACTIVE and second.policy_name == "SEV1 (urgent)"
    assert len(emails_to("alice@example.com")) == 2


def test_raising_the_severity_mid_escalation_replaces_its_remaining_pages(paging):
    incident = open_sev(Severity.SEV2)
    incident_escalate(incident=incident, severity=Severity.SEV1, actor=paging["erin"])
    first, second = incident.escalations.order_by("started_at", "id")
    assert first.status == EscalationStatus.REPLACED
    assert set(first.pages.exclude(sequence=0).values_list("status", flat=True)) == {
        PageStatus.CANCELLED
    }
    assert second.status == EscalationStatus.ACTIVE
    assert (
        "Escalation by 'SEV2 (urgent)' stopped (replaced by a new escalation for the new "
        "severity); 5 planned page(s) will not be sent." in timeline(incident)
    )


def test_a_page_due_while_no_worker_ran_is_sent_when_the_portal_is_back_saying_it_is_late(
    paging,
):
    incident = open_sev()
    escalation = incident.escalations.get()
    t0 = escalation.started_at
    # Down from minute 1 to minute 21: pages 2 (due at 5) and 3 (due at 20) are overdue.
    escalations_sweep(now=t0 + 21 * MINUTE)
    second, third = escalation.pages.filter(sequence__in=(1, 2)).order_by("sequence")
    assert second.status == third.status == PageStatus.SENT
    assert "(late: due at" in second.outcome and "16 min later" in second.outcome
    assert "late" not in third.outcome  # one minute is within its time
    assert any("16 min later because no worker was running" in m for m in timeline(incident))


def test_each_page_is_sent_at_most_once_even_when_sent_twice(paging):
    incident = open_sev()
    page = incident.escalations.get().pages.get(sequence=1)
    due = page.due_at
    assert escalation_page_send(page_id=page.pk, now=due - MINUTE) is None  # not due yet
    assert escalation_page_send(page_id=page.pk, now=due).status == PageStatus.SENT
    assert escalation_page_send(page_id=page.pk, now=due) is None  # a redelivered message
    escalations_sweep(now=due + MINUTE)
    page.refresh_from_db()
    assert page.notifications.count() == 2
    assert len(emails_to("alice@example.com")) == 2


@pytest.mark.django_db(transaction=True)
def test_two_workers_racing_for_one_page_send_it_once(paging):
    incident = open_sev()
    page = incident.escalations.get().pages.get(sequence=1)
    barrier = threading.Barrier(2)
    results = []

    def worker():
        try:
            barrier.wait()
            results.append(escalation_page_send(page_id=page.pk, now=page.due_at))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r is None for r in results) == [False, True]
    assert len(emails_to("alice@example.com")) == 2


def test_a_page_left_sending_by_a_broken_transaction_is_sent_by_the_sweeper(paging):
    incident = open_sev()
    page = incident.escalations.get().pages.get(sequence=1)
    # What a claim looks like if it ever outlived its transaction: nothing was sent.
    EscalationPage.objects.filter(pk=page.pk).update(
        status=PageStatus.SENDING, claimed_at=page.due_at
    )
    counts = escalations_sweep(now=page.due_at + 3 * MINUTE)
    assert counts["failed"] == 1  # put back...
    escalations_sweep(now=page.due_at + 3 * MINUTE)  # ...and sent, once, late
    page.refresh_from_db()
    assert page.status == PageStatus.SENT and "late" in page.outcome
    assert len(emails_to("alice@example.com")) == 2


def test_a_failing_channel_does_not_hold_the_next_step_back(paging, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", 9, 2
    from opsportal.people.services import notification_deliver

    incident = open_sev()
    escalation = incident.escalations.get()
    [first] = emails_to("alice@example.com")
    delivered = notification_deliver(notification_id=first.pk)
    assert delivered.status == "pending" and "failed" in delivered.last_error  # retried later
    assert any(
        m.startswith("Delivery to alice@example.com failed (Email to alice@example.com failed")
        and m.endswith("retrying with backoff.")
        for m in timeline(incident)
    )
    escalations_sweep(now=escalation.started_at + 5 * MINUTE)
    assert len(emails_to("alice@example.com")) == 2


def test_the_tasks_send_a_due_page_and_sweep(paging):
    incident = open_sev()
    escalation = incident.escalations.get()
    page = escalation.pages.get(sequence=1)
    assert send_escalation_page.apply(args=[page.pk]).get() is False  # due in 5 minutes
    EscalationPage.objects.filter(pk=page.pk).update(due_at=escalation.started_at)
    assert send_escalation_page.apply(args=[page.pk]).get() is True
    assert sweep_escalations.apply().get()["redispatched"] == 0


def test_raising_an_acknowledged_incident_pages_once_and_does_not_escalate(paging):
    incident = open_sev(Severity.SEV3)
    incident_acknowledge(incident=incident, actor=paging["erin"])
    incident_escalate(incident=incident, severity=Severity.SEV1, actor=paging["erin"])
    assert incident.escalations.count() == 1  # the SEV3 one, from before the acknowledgement
    # The one-off page of the raise reaches the on-call (without an escalation).
    assert emails_to("alice@example.com")[-1].subject.startswith("[SEV1] Escalated")


def test_a_named_contact_then_another_policy_pages_each_at_its_time(paging):
    """A policy may page a named person and then hand over to another policy (the next
    level), whose steps follow at the handed-over time."""
    on_call = paging["teams"][Responsibility.ON_CALL]
    devops = paging["teams"][Responsibility.DEVOPS]
    EscalationPolicy.objects.filter(team=on_call, severity=Severity.SEV1).update(active=False)
    heads = EscalationPolicy.objects.create(name="Heads of", team=devops, severity=Severity.SEV1)
    EscalationStep.objects.create(
        policy=heads,
        position=1,
        target=EscalationTarget.CONTACT,
        contact=paging["alice"],
        wait_minutes=5,
    )
    night = EscalationPolicy.objects.create(name="Night", team=on_call, severity=Severity.SEV1)
    EscalationStep.objects.create(
        policy=night,
        position=1,
        target=EscalationTarget.CONTACT,
        contact=paging["dave"],
        wait_minutes=10,
    )
    EscalationStep.objects.create(
        policy=night, position=2, target=EscalationTarget.POLICY, next_policy=heads
    )
    plan = escalation_plan(policy=night)
    assert [(p.offset, p.step.contact.name) for p in plan] == [
        (0 * MINUTE, "Dave"),
        (10 * MINUTE, "Alice"),
    ]

    incident = open_sev()
    escalation = incident.escalations.get()
    t0 = escalation.started_at
    assert len(emails_to("dave@example.com")) == 1  # the named contact, at once
    assert not emails_to("alice@example.com")
    escalations_sweep(now=t0 + 10 * MINUTE - dt.timedelta(seconds=1))
    assert not emails_to("alice@example.com")
    escalations_sweep(now=t0 + 10 * MINUTE)
    assert len(emails_to("alice@example.com")) == 1  # the next policy's step
    escalation.refresh_from_db()
    assert escalation.status == EscalationStatus.EXHAUSTED
    steps = [m for m in timeline(incident) if m.startswith("Escalation page")]
    assert "Night step 1: Dave" in steps[0] and "Heads of step 1: Alice" in steps[1]
