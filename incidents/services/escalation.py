"""Escalation until someone acknowledges: policies, the pages planned from them, sending
each page once when it is due, and stopping the moment the incident is acknowledged or
resolved.

An escalation is row-first work (CONVENTIONS.md, "Background operations"): starting one
writes every planned page as a row, due at its time. Whoever finds a page due (its own
task, queued with that time, or the sweeper that beat runs every 30 s) claims it and, in
the same transaction, records the notifications and marks it sent, so a page is sent at
most once however many workers race for it, and a worker that dies mid-send leaves the
row scheduled for the next sweep (never half-sent). A page that was due while no worker
ran (the portal was down) is sent when it comes back, with a note that it is late.
Delivery is the people layer's (`notify_destinations`, with its own retries): a channel
that fails never holds the escalation back, because the next page is due by the clock,
not by the last delivery.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from incidents.models import (
    Escalation,
    EscalationPage,
    EscalationPolicy,
    EscalationStatus,
    EscalationStep,
    EscalationTarget,
    Incident,
    PageStatus,
    Severity,
    Source,
    Status,
    TimelineEvent,
    TimelineKind,
)
from incidents.services.acknowledge import incident_followup_notify, page_notify
from opsportal.audit.models import AuditAction
from opsportal.audit.services import audit_record
from opsportal.jobs import JobSpec, job_claim, job_finish, job_sweep
from opsportal.people.models import Contact, Responsibility, Team
from opsportal.people.selectors import on_call_contacts
from opsportal.queueing import enqueue_after_commit
from opsportal.refusals import ServiceRefused

logger = logging.getLogger(__name__)

# A page sent this long after it was due says so (the portal or its workers were down).
LATE_AFTER = dt.timedelta(minutes=1)
# A claim is committed together with the send, so a page stays "sending" only inside one
# transaction; one seen "sending" for longer was left by a broken transaction: schedule it
# again.
SENDING_TIME_LIMIT = dt.timedelta(minutes=2)
# How many pages one policy may plan (a long repeat of a long chain is a mistake).
MAX_PAGES = 50


class EscalationRefused(ServiceRefused):
    """The policy cannot be used as it is; `message` says why."""


# --- policies ---------------------------------------------------------------------------


def escalation_policy_check(
    *, policy: EscalationPolicy, steps: list[EscalationStep] | None = None
) -> None:
    """Refuse a policy that could not escalate: no steps, a wait of 0 or less, a repeat on
    a step that is not the last, a step without its contact/policy or channel, or a loop
    (the policy hands over, directly or through others, to itself). `steps`: the steps as
    about to be saved (the admin's form), else the saved ones."""
    if steps is None:
        steps = list(policy.steps.all()) if policy.pk else []
    steps = sorted(steps, key=lambda step: step.position)
    if not steps:
        raise EscalationRefused(
            f"The escalation policy {policy.name!r} has no steps: add at least one."
        )
    for step in steps:
        _step_check(policy, step, last=step is steps[-1])
    _loop_check(policy, [s.next_policy for s in steps if s.next_policy_id], [policy])


def _step_check(policy: EscalationPolicy, step: EscalationStep, *, last: bool) -> None:
    where = f"Step {step.position} of {policy.name!r}"
    if step.wait_minutes is None or step.wait_minutes <= 0:
        raise EscalationRefused(
            f"{where} waits {step.wait_minutes} minutes; a step must wait more than 0 minutes "
            "for an acknowledgement."
        )
    if step.repeat and not last:
        raise EscalationRefused(f"{where} repeats, but only the last step may repeat.")
    if step.target == EscalationTarget.CONTACT and step.contact_id is None:
        raise EscalationRefused(f"{where} pages a named contact: choose the contact.")
    if step.target == EscalationTarget.POLICY and step.next_policy_id is None:
        raise EscalationRefused(f"{where} hands over to another policy: choose the policy.")
    if not (step.email or step.chat) and step.target != EscalationTarget.POLICY:
        raise EscalationRefused(f"{where} uses no channel: choose email, chat or both.")


def _loop_check(
    policy: EscalationPolicy, following: list[EscalationPolicy], path: list[EscalationPolicy]
) -> None:
    for next_policy in following:
        if any(next_policy.pk == seen.pk for seen in path if seen.pk):
            names = [p.name for p in path] + [next_policy.name]
            raise EscalationRefused(
                "The escalation policies loop (a policy may not hand over to itself): "
                + " → ".join(repr(n) for n in names)
                + "."
            )
        deeper = [
            s.next_policy
            for s in next_policy.steps.filter(target=EscalationTarget.POLICY).select_related(
                "next_policy"
            )
            if s.next_policy_id
        ]
        _loop_check(next_policy, deeper, [*path, next_policy])


def escalation_policy_for(*, incident: Incident) -> EscalationPolicy | None:
    """The incident's team's policy for its severity (or for every severity); an incident
    without a team (opened by an alert), or whose team has none, follows the on-call
    team's."""
    on_call = Team.objects.filter(responsibility=Responsibility.ON_CALL).first()
    for team in dict.fromkeys(t for t in (incident.team, on_call) if t is not None):
        policies = EscalationPolicy.objects.filter(team=team, active=True).filter(
            Q(severity=incident.severity) | Q(severity="")
        )
        # The severity's own policy before the team's catch-all.
        policy = max(policies, key=lambda p: p.severity != "", default=None)
        if policy is not None:
            return policy
    return None


@dataclass(frozen=True)
class PlannedPage:
    step: EscalationStep
    policy: EscalationPolicy
    offset: dt.timedelta
    description: str


def escalation_plan(*, policy: EscalationPolicy) -> list[PlannedPage]:
    """Every page the policy sends when nobody acknowledges, with its time after the start."""
    escalation_policy_check(policy=policy)
    planned: list[PlannedPage] = []
    _plan_into(policy, dt.timedelta(0), planned)
    return planned[:MAX_PAGES]


def _plan_into(policy: EscalationPolicy, offset: dt.timedelta, planned: list) -> dt.timedelta:
    steps = list(policy.steps.select_related("contact", "team", "next_policy"))
    for step in steps:
        if step.target == EscalationTarget.POLICY:
            offset = _plan_into(step.next_policy, offset, planned)
            continue
        for attempt in range(1 + (step.repeat if step is steps[-1] else 0)):
            again = f", again ({attempt} of {step.repeat})" if attempt else ""
            planned.append(
                PlannedPage(
                    step,
                    policy,
                    offset,
                    f"{policy.name} step {step.position}: {_target_label(policy, step)}{again}",
                )
            )
            offset += dt.timedelta(minutes=step.wait_minutes)
    return offset


def _target_label(policy: EscalationPolicy, step: EscalationStep) -> str:
    if step.target == EscalationTarget.CONTACT:
        return step.contact.name
    if step.target == EscalationTarget.TEAM:
        return f"the whole {(step.team or policy.team).name}"
    return f"{policy.team.name} on-call"


# --- running an escalation --------------------------------------------------------------


def escalation_start(
    *, incident: Incident, source: str = Source.WORKER, now: dt.datetime | None = None
) -> Escalation | None:
    """Plan the incident's escalation and send its first page now; None when no policy
    applies (or the policy is broken: that is logged and on the timeline, and the
    incident's ordinary paging still happened). A running escalation of the same incident
    (its severity was raised) is replaced."""
    now = now or timezone.now()
    # Only an incident nobody has acknowledged escalates (raising an acknowledged one's
    # severity pages once, as before).
    if incident.status != Status.OPEN:
        return None
    policy = escalation_policy_for(incident=incident)
    if policy is None:
        return None
    try:
        planned = escalation_plan(policy=policy)
    except EscalationRefused as refusal:
        _timeline(incident, f"Not escalating: {refusal.message}", source=source, at=now)
        logger.warning("Incident %s not escalated: %s", incident.pk, refusal.message)
        return None
    with transaction.atomic():
        _stop(incident, EscalationStatus.REPLACED, "the severity change", now=now, quiet=True)
        escalation = Escalation.objects.create(
            incident=incident, policy=policy, policy_name=policy.name, started_at=now
        )
        pages = EscalationPage.objects.bulk_create(
            EscalationPage(
                escalation=escalation,
                sequence=number,
                step=page.step,
                description=page.description[:300],
                due_at=now + page.offset,
            )
            for number, page in enumerate(planned)
        )
        _timeline(
            incident,
            f"Escalating by {policy.name!r}: {len(pages)} pages planned until someone "
            "acknowledges ("
            + "; ".join(f"{p.description} at +{_minutes(p.due_at - now)}" for p in pages)
            + ")",
            source=source,
            at=now,
        )
        audit_record(
            action=AuditAction.OPERATION,
            obj=incident,
            message=f"Escalation started by policy {policy.name!r} ({len(pages)} pages)",
        )
        for page in pages:
            if page.due_at <= now:
                escalation_page_send(page_id=page.pk, now=now)
            else:
                _dispatch(page)
    return escalation


def _minutes(delta: dt.timedelta) -> str:
    return f"{int(delta.total_seconds() // 60)} min"


def _dispatch(page: EscalationPage) -> None:
    from incidents.tasks import send_escalation_page

    # Due later: the broker holds it until then; the sweeper sends it if the message is lost.
    enqueue_after_commit(send_escalation_page, page.pk, eta=page.due_at)


def escalation_page_send(*, page_id: int, now: dt.datetime | None = None) -> EscalationPage | None:
    """Send one due page, at most once. None when it is not due yet or someone else sent
    (or cancelled) it."""
    now = now or timezone.now()
    with transaction.atomic():
        if not job_claim(
            EscalationPage,
            page_id,
            from_status=PageStatus.SCHEDULED,
            to_status=PageStatus.SENDING,
            when=Q(due_at__lte=now),
            claimed_at=now,
        ):
            return None
        page = EscalationPage.objects.select_related(
            "escalation__incident", "step__policy__team", "step__contact", "step__team"
        ).get(pk=page_id)
        # Locked, so an acknowledgement committing meanwhile either comes first (nothing is
        # sent) or waits for this page.
        escalation = Escalation.objects.select_for_update().get(pk=page.escalation_id)
        incident = page.escalation.incident
        incident.refresh_from_db()
        if escalation.status != EscalationStatus.ACTIVE or not incident.is_active:
            job_finish(
                EscalationPage,
                page_id,
                from_status=PageStatus.SENDING,
                to_status=PageStatus.CANCELLED,
                finished_field=None,
                outcome="Not sent: the escalation had stopped.",
            )
            return EscalationPage.objects.get(pk=page_id)
        if page.step is None:
            notifications, outcome = [], "Not sent: its step was deleted from the policy."
        else:
            notifications, outcome = page_notify(page=page, incident=incident, now=now)
        late = now - page.due_at
        if late > LATE_AFTER:
            outcome += (
                f" (late: due at {page.due_at:%H:%M:%S} UTC, sent {_minutes(late)} later "
                "because no worker was running)"
            )
        job_finish(
            EscalationPage,
            page_id,
            from_status=PageStatus.SENDING,
            to_status=PageStatus.SENT,
            finished_field="sent_at",
            now=now,
            outcome=outcome[:5000],
        )
        page.notifications.set(notifications)
        total = escalation.pages.count()
        _timeline(
            incident,
            f"Escalation page {page.sequence + 1} of {total} ({page.description}): {outcome}",
            source=Source.WORKER,
            at=now,
        )
        if not escalation.pages.filter(status=PageStatus.SCHEDULED).exists():
            escalation.status = EscalationStatus.EXHAUSTED
            escalation.stopped_at = now
            escalation.save(update_fields=["status", "stopped_at"])
            _timeline(
                incident,
                f"Escalation by {escalation.policy_name!r} sent every page; nobody has "
                "acknowledged yet.",
                source=Source.WORKER,
                at=now,
            )
    return EscalationPage.objects.get(pk=page_id)


def escalation_stop(
    *, incident: Incident, why: str, by: str, now: dt.datetime | None = None
) -> Escalation | None:
    """Stop the incident's running escalation (why: "acknowledged" or "resolved"): pages
    not sent yet never will be."""
    status = {
        "acknowledged": EscalationStatus.ACKNOWLEDGED,
        "resolved": EscalationStatus.RESOLVED,
    }[why]
    return _stop(incident, status, by, now=now or timezone.now())


def _stop(
    incident: Incident, status: str, by: str, *, now: dt.datetime, quiet: bool = False
) -> Escalation | None:
    with transaction.atomic():
        escalation = (
            Escalation.objects.select_for_update()
            .filter(incident=incident, status=EscalationStatus.ACTIVE)
            .first()
        )
        if escalation is None:
            return None
        cancelled = escalation.pages.filter(status=PageStatus.SCHEDULED).update(
            status=PageStatus.CANCELLED, outcome=f"Not sent: {status} by {by}."
        )
        escalation.status = status
        escalation.stopped_at = now
        escalation.stopped_by = by[:200]
        escalation.save(update_fields=["status", "stopped_at", "stopped_by"])
        if status == EscalationStatus.REPLACED:
            why = "replaced by a new escalation for the new severity"
        else:
            why = f"{EscalationStatus(status).label.split(': ')[-1]} by {by}"
        if not quiet or cancelled:
            _timeline(
                incident,
                f"Escalation by {escalation.policy_name!r} stopped ({why}); "
                f"{cancelled} planned page(s) will not be sent.",
                source=Source.WORKER,
                at=now,
            )
    return escalation


def _timeline(incident: Incident, message: str, *, source: str, at: dt.datetime) -> None:
    TimelineEvent.objects.create(
        incident=incident, at=at, kind=TimelineKind.NOTIFICATION, source=source, message=message
    )


# --- the sweeper ------------------------------------------------------------------------


def _fail_dead(page: EscalationPage, now: dt.datetime) -> bool:
    # The claim and the send commit together, so a page left "sending" sent nothing:
    # schedule it again (it is due, so the next sweep sends it, late).
    return job_finish(
        EscalationPage,
        page.pk,
        from_status=PageStatus.SENDING,
        to_status=PageStatus.SCHEDULED,
        finished_field=None,
        claimed_at=None,
    )


def escalations_sweep(*, now: dt.datetime | None = None) -> dict[str, int]:
    """Send every page that is due and not sent (its message was lost, or no worker ran
    when it fell due), oldest first."""
    now = now or timezone.now()
    spec = JobSpec(
        model=EscalationPage,
        queued=PageStatus.SCHEDULED,
        running=PageStatus.SENDING,
        # In this process, at the sweep's time: the row, not the broker, says what is due.
        dispatch=lambda page: escalation_page_send(page_id=page.pk, now=now),
        fail=_fail_dead,
        lost_after=dt.timedelta(0),
        queued_field="due_at",
        lost_lookup="lte",
        order_by="due_at",
        started_field="claimed_at",
        time_limit=SENDING_TIME_LIMIT,
        batch=500,
    )
    return job_sweep(spec, now=now)


# --- defaults ---------------------------------------------------------------------------


def escalation_load_defaults() -> None:
    """The runbook's escalation: SEV1/SEV2 page the on-call now, the same person again
    after 5 minutes, then the DevOps team after 15, repeating every 15 minutes up to 3
    times; SEV3/SEV4 page the on-call only. Created once; edits are never overwritten."""
    from opsportal.schedules import periodic_task_ensure

    periodic_task_ensure(
        name="Escalate unacknowledged incidents",
        task="incidents.sweep_escalations",
        every_seconds=30,
        description="Sends escalation pages that are due and were not sent (lost messages, "
        "or the portal was down when they fell due).",
    )
    on_call = Team.objects.filter(responsibility=Responsibility.ON_CALL).first()
    devops = Team.objects.filter(responsibility=Responsibility.DEVOPS).first()
    if on_call is None or EscalationPolicy.objects.filter(team=on_call).exists():
        return
    with transaction.atomic():
        for severities, label in (
            ((Severity.SEV1, Severity.SEV2), "urgent"),
            ((Severity.SEV3, Severity.SEV4), "on-call only"),
        ):
            for severity in severities:
                policy = EscalationPolicy.objects.create(
                    name=f"{Severity(severity).label.split()[0]} ({label})",
                    team=on_call,
                    severity=severity,
                )
                if severity in (Severity.SEV1, Severity.SEV2):
                    steps = [
                        dict(target=EscalationTarget.ON_CALL, wait_minutes=5),
                        dict(target=EscalationTarget.ON_CALL, wait_minutes=15),
                        dict(
                            target=EscalationTarget.TEAM,
                            team=devops or on_call,
                            wait_minutes=15,
                            repeat=3,
                        ),
                    ]
                else:
                    steps = [dict(target=EscalationTarget.ON_CALL, wait_minutes=15)]
                for position, step in enumerate(steps, 1):
                    EscalationStep.objects.create(policy=policy, position=position, **step)


def contacts_for_page(page: EscalationPage, *, at: dt.datetime) -> tuple[list[Contact], Team]:
    """Whom this page's step names, and the team whose chat webhooks it posts to."""
    step = page.step
    policy = step.policy
    if step.target == EscalationTarget.CONTACT:
        return [step.contact] if step.contact.active else [], step.contact.team
    if step.target == EscalationTarget.TEAM:
        team = step.team or policy.team
        return list(team.contacts.filter(active=True)), team
    return on_call_contacts(team=policy.team, at=at), policy.team


# --- hooks the incident lifecycle calls -------------------------------------------------


def escalation_on_paged(*, incident: Incident, source: str) -> Team | None:
    """The incident was opened or its severity raised: (re)start its escalation. Returns
    the team the escalation pages (its on-call is then paged by the escalation, with
    Acknowledge links, rather than by the one-off page), or None."""
    escalation = escalation_start(incident=incident, source=source)
    return escalation.policy.team if escalation and escalation.policy else None


def escalation_on_answered(*, incident: Incident, what: str, by: str) -> None:
    """The incident was acknowledged or resolved (what: "acknowledged" / "resolved"): stop
    its escalation and tell everyone paged so far, on the channels they were paged on."""
    escalation_stop(incident=incident, why=what, by=by)
    notifications = incident_followup_notify(incident=incident, what=what.capitalize(), by=by)
    if notifications:
        _timeline(
            incident,
            f"Told everyone paged so far that it was {what} by {by}: "
            + ", ".join(n.destination for n in notifications),
            source=Source.WORKER,
            at=timezone.now(),
        )


def on_notification_attempted(sender, notification, **kwargs) -> None:
    """A page about an incident failed: say so on its timeline, with the reason (a failing
    channel is retried with backoff; the escalation goes on by the clock regardless)."""
    if notification.status not in ("pending", "failed") or not notification.last_error:
        return
    if notification.about_type_id is None or notification.about_type.model_class() is not Incident:
        return
    incident = Incident.objects.filter(pk=notification.about_id).first()
    if incident is None:
        return
    then = (
        "retrying with backoff"
        if notification.status == "pending"
        else f"gave up after {notification.attempts} attempts"
    )
    _timeline(
        incident,
        f"Delivery to {notification.destination} failed ({notification.last_error}); {then}.",
        source=Source.WORKER,
        at=timezone.now(),
    )
