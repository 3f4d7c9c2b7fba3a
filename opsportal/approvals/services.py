"""Two-person approval: asking for it, deciding it, letting it expire, and break-glass.

The shared layer owns the mechanics; each kind of subject (an operation, a restore) registers
what approving or dropping it means with `approval_subject_register` from its AppConfig, so
the subject's state and the decision change in one transaction: a decision whose subject
cannot follow (it was cancelled meanwhile) is refused and changes nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.db import models, transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from opsportal.actors import acting_name, acting_user, actor_require
from opsportal.approvals.models import (
    ApprovalPolicy,
    ApprovalRequest,
    ApprovalScope,
    ApprovalStatus,
    approve_permission,
)
from opsportal.approvals.signals import approval_decided
from opsportal.audit.models import AuditAction, AuditOutcome
from opsportal.audit.services import audit_record
from opsportal.people.models import Responsibility, Team
from opsportal.people.services import notify, notify_destinations
from opsportal.refusals import ServiceRefused


class ApprovalRefused(ServiceRefused):
    """The decision (or break-glass) is refused; `message` says why."""


@dataclass(frozen=True)
class SubjectHandlers:
    """What approving and dropping a subject mean. `approved(subject, approval)` starts it
    (raise ApprovalRefused if it cannot); `dropped(subject, approval, message)` ends it
    (rejected, expired or withdrawn)."""

    approved: Callable[[models.Model, ApprovalRequest], None]
    dropped: Callable[[models.Model, ApprovalRequest, str], None]


_handlers: dict[str, SubjectHandlers] = {}


def approval_subject_register(
    model: type[models.Model],
    *,
    approved: Callable[[models.Model, ApprovalRequest], None],
    dropped: Callable[[models.Model, ApprovalRequest, str], None],
) -> None:
    _handlers[model._meta.label_lower] = SubjectHandlers(approved=approved, dropped=dropped)


# Chat webhooks of the team that answers for a scope get the request too.
_SCOPE_TEAM = {
    ApprovalScope.DATABASES: Responsibility.DATABASE,
    ApprovalScope.RESTORES: Responsibility.DATABASE,
    ApprovalScope.CONTAINERS: Responsibility.DEVOPS,
    ApprovalScope.CACHES: Responsibility.DEVOPS,
    ApprovalScope.API: Responsibility.DEVOPS,
}


def approval_policy_for(subject: str, *, narrowed: bool = False) -> ApprovalPolicy | None:
    """The policy that makes a person's request of this kind wait, or None if it may run.
    No policy row (defaults not loaded) means no approval."""
    policy = ApprovalPolicy.objects.filter(subject=subject, required=True).first()
    if policy is None or (narrowed and policy.exempt_when_narrowed):
        return None
    return policy


def approval_url(approval: ApprovalRequest) -> str:
    return settings.PORTAL_URL + reverse(
        "admin:approvals_approvalrequest_change", args=[approval.pk]
    )


def approvers(*, scope: str, exclude=None) -> models.QuerySet:
    """The active people who hold the approve permission of `scope` (through a role group
    or directly), but not `exclude` (the requester)."""
    app_label, codename = approve_permission(scope).split(".")
    holds = Q(
        groups__permissions__content_type__app_label=app_label,
        groups__permissions__codename=codename,
    ) | Q(
        user_permissions__content_type__app_label=app_label,
        user_permissions__codename=codename,
    )
    people = get_user_model().objects.filter(holds, is_active=True).distinct()
    if exclude is not None:
        people = people.exclude(pk=exclude.pk)
    return people.select_related("contact").order_by("username")


def approval_request(
    *,
    subject: models.Model,
    policy: ApprovalPolicy,
    actor,
    summary: str,
    reason: str = "",
    now: dt.datetime | None = None,
) -> ApprovalRequest:
    """Record that `subject` waits for a second person and notify the people who may approve
    it, with a link to the approval page. Call inside the transaction that created the
    subject (waiting, not dispatched)."""
    now = now or timezone.now()
    requester = acting_user(actor)
    approval = ApprovalRequest.objects.create(
        policy_subject=policy.subject,
        scope=policy.scope,
        subject_type=ContentType.objects.get_for_model(subject),
        subject_id=subject.pk,
        summary=summary[:500],
        reason=reason[:500],
        requested_by=requester,
        requested_at=now,
        expires_at=now + dt.timedelta(minutes=policy.expires_after_minutes),
    )
    audit_record(
        action=AuditAction.OPERATION,
        obj=approval,
        actor=requester,
        outcome=AuditOutcome.REQUESTED,
        message=f"Approval requested for {summary}"
        + (f": {reason}" if reason else "")
        + f" (expires {timezone.localtime(approval.expires_at):%H:%M})",
    )
    emails = []
    for person in approvers(scope=policy.scope, exclude=requester):
        contact = getattr(person, "contact", None)
        emails.append(person.email or (contact.email if contact else ""))
    team = Team.objects.filter(responsibility=_SCOPE_TEAM.get(policy.scope)).first()
    url = approval_url(approval)
    notify_destinations(
        emails=emails,
        webhook_ids=team.webhooks.filter(active=True).values_list("pk", flat=True) if team else (),
        subject=f"Approval needed: {summary}"[:255],
        body=f"{acting_name(requester, otherwise='The system')} asks for: {summary}\n"
        f"Reason: {reason or '(none given)'}\n"
        f"Approve or reject it (someone other than the requester) before "
        f"{timezone.localtime(approval.expires_at):%Y-%m-%d %H:%M %Z}:\n{url}",
        about=approval,
        links=[{"text": "Approve or reject", "url": url, "style": "primary"}],
    )
    return approval


def _close(
    approval: ApprovalRequest,
    *,
    status: str,
    actor,
    reason: str,
    now: dt.datetime,
    message: str,
) -> None:
    """Move the locked, pending `approval` to `status`, have its subject follow, audit it and
    announce it after commit. Inside the caller's transaction."""
    approval.status = status
    approval.decided_by = acting_user(actor)
    approval.decided_at = now
    approval.decision_reason = reason[:500]
    approval.save(update_fields=["status", "decided_by", "decided_at", "decision_reason"])
    handlers = _handlers.get(approval.subject_type.model_class()._meta.label_lower)
    subject = approval.subject
    if handlers is not None and subject is not None:
        if status == ApprovalStatus.APPROVED:
            handlers.approved(subject, approval)
        else:
            handlers.dropped(subject, approval, message)
    audit_record(
        action=AuditAction.OPERATION,
        obj=approval,
        actor=acting_user(actor),
        outcome=AuditOutcome.SUCCESS,
        message=message,
    )
    approval_decided.send(sender=ApprovalRequest, approval=approval)


def approval_decide(
    *,
    approval: ApprovalRequest,
    actor,
    approve: bool,
    reason: str,
    now: dt.datetime | None = None,
) -> ApprovalRequest:
    """Approve (the subject starts) or reject (it is dropped) a pending request, with a
    reason. Refused, changing nothing, for someone without the scope's approve permission,
    the requester themselves, a request already decided, and one past its expiry (which is
    then marked expired, as the sweeper would have)."""
    now = now or timezone.now()
    verb = "approve" if approve else "reject"
    actor_require(actor, approve_permission(approval.scope), doing=f"{verb} this request")
    reason = reason.strip()
    if not reason:
        raise ApprovalRefused(f"Give a reason to {verb} the request.")
    if len(reason) > 500:
        raise ApprovalRefused("The reason is too long (500 characters at most).")
    refusal = ""
    who = acting_name(actor, otherwise="the system")
    with transaction.atomic():
        locked = ApprovalRequest.objects.select_for_update().get(pk=approval.pk)
        if locked.requested_by_id is not None and locked.requested_by_id == getattr(
            acting_user(actor), "pk", None
        ):
            refusal = "You asked for this yourself: a second person must approve or reject it."
        elif locked.status != ApprovalStatus.PENDING:
            by = f" by {locked.decided_by.get_username()}" if locked.decided_by else ""
            at = (
                f" at {timezone.localtime(locked.decided_at):%Y-%m-%d %H:%M}"
                if locked.decided_at
                else ""
            )
            refusal = (
                f"This request was already {locked.get_status_display().lower()}{by}{at}; "
                "nothing was changed."
            )
        elif now >= locked.expires_at:
            # Expiring it is what the sweeper would have done; the decision is refused.
            _expire(locked, now=now)
            refusal = (
                f"This request expired at {timezone.localtime(locked.expires_at):%Y-%m-%d %H:%M}"
                " without a decision and was dropped; nothing was run. The requester must "
                "ask again."
            )
        else:
            try:
                # A savepoint: when the subject cannot start (its incident was resolved
                # meanwhile), the decision is undone and refused like the ones above.
                with transaction.atomic():
                    _close(
                        locked,
                        status=ApprovalStatus.APPROVED if approve else ApprovalStatus.REJECTED,
                        actor=actor,
                        reason=reason,
                        now=now,
                        message=f"{'Approved' if approve else 'Rejected'} by {who}: {reason} "
                        f"({locked.summary})",
                    )
            except ApprovalRefused as refused:
                locked.refresh_from_db()
                refusal = refused.message
    if refusal:
        audit_record(
            action=AuditAction.OPERATION,
            obj=locked,
            actor=acting_user(actor),
            outcome=AuditOutcome.FAILURE,
            message=f"{verb.capitalize()} refused for {who}: {refusal}",
        )
        raise ApprovalRefused(refusal)
    approval.refresh_from_db()
    return approval


def _expire(approval: ApprovalRequest, *, now: dt.datetime) -> None:
    minutes = (approval.expires_at - approval.requested_at).total_seconds() / 60
    _close(
        approval,
        status=ApprovalStatus.EXPIRED,
        actor=None,
        reason="",
        now=now,
        message=f"Approval expired: nobody approved it within {minutes:.0f} minutes "
        f"({approval.summary}).",
    )


def approvals_expire(
    *, now: dt.datetime | None = None, subject_model: type[models.Model] | None = None
) -> int:
    """Expire pending requests past their time (of one subject model, or all), dropping their
    subjects. Returns how many expired."""
    now = now or timezone.now()
    due = ApprovalRequest.objects.filter(status=ApprovalStatus.PENDING, expires_at__lte=now)
    if subject_model is not None:
        due = due.filter(subject_type=ContentType.objects.get_for_model(subject_model))
    expired = 0
    for pk in due.order_by("expires_at").values_list("pk", flat=True)[:500]:
        with transaction.atomic():
            locked = (
                ApprovalRequest.objects.select_for_update(skip_locked=True)
                .filter(pk=pk, status=ApprovalStatus.PENDING)
                .first()
            )
            if locked is None:
                continue
            _expire(locked, now=now)
            expired += 1
    return expired


def approval_expire_if_due(*, subject: models.Model, now: dt.datetime | None = None) -> bool:
    """Expire the subject's pending request if its time has passed (a request that blocks a
    new one should not wait for the sweeper). True if it expired it."""
    now = now or timezone.now()
    with transaction.atomic():
        locked = (
            ApprovalRequest.objects.select_for_update()
            .filter(
                subject_type=ContentType.objects.get_for_model(subject),
                subject_id=subject.pk,
                status=ApprovalStatus.PENDING,
                expires_at__lte=now,
            )
            .first()
        )
        if locked is None:
            return False
        _expire(locked, now=now)
    return True


def approval_lock(*, subject: models.Model) -> ApprovalRequest | None:
    """Lock the subject's pending request, if any, inside the caller's transaction. Whoever
    changes a waiting subject takes this lock first, as deciding does (request, then
    subject), so a cancel racing an approval waits for it instead of deadlocking."""
    return (
        ApprovalRequest.objects.select_for_update()
        .filter(
            subject_type=ContentType.objects.get_for_model(subject),
            subject_id=subject.pk,
            status=ApprovalStatus.PENDING,
        )
        .first()
    )


def approval_withdraw(*, subject: models.Model, actor) -> None:
    """The subject was cancelled while waiting: its request is closed as withdrawn (the
    subject itself is already ended by the caller, so no handler runs)."""
    approval = (
        ApprovalRequest.objects.select_for_update()
        .filter(
            subject_type=ContentType.objects.get_for_model(subject),
            subject_id=subject.pk,
            status=ApprovalStatus.PENDING,
        )
        .first()
    )
    if approval is None:
        return
    approval.status, approval.decided_at = ApprovalStatus.WITHDRAWN, timezone.now()
    approval.decided_by = acting_user(actor)
    approval.save(update_fields=["status", "decided_at", "decided_by"])
    audit_record(
        action=AuditAction.OPERATION,
        obj=approval,
        actor=acting_user(actor),
        message=f"Withdrawn (cancelled by {acting_name(actor, otherwise='the system')}): "
        f"{approval.summary}",
    )
    approval_decided.send(sender=ApprovalRequest, approval=approval)


def approval_for(subject: models.Model) -> ApprovalRequest | None:
    return (
        ApprovalRequest.objects.select_related("requested_by", "decided_by")
        .filter(subject_type=ContentType.objects.get_for_model(subject), subject_id=subject.pk)
        .first()
    )


def break_glass_record(*, subject: models.Model, actor, summary: str, reason: str) -> None:
    """A request that needed approval runs without it (a SEV1 incident): the audit record is
    marked break-glass and the Security team is told, with the person and the reason."""
    who = acting_name(actor, otherwise="the system")
    audit_record(
        action=AuditAction.OPERATION,
        obj=subject,
        actor=acting_user(actor),
        outcome=AuditOutcome.REQUESTED,
        changes={"break_glass": True, "break_glass_reason": reason[:500]},
        message=f"BREAK-GLASS: {who} ran {summary} without approval: {reason}",
    )
    notify(
        responsibility=Responsibility.SECURITY,
        subject=f"Break-glass: {who} ran {summary} without approval"[:255],
        body=f"{who} used break-glass during a SEV1 incident to run {summary} without a "
        f"second person's approval.\nReason: {reason}",
        about=subject,
    )


def approvals_load_defaults(policies: list[tuple[str, str, str, bool, bool]]) -> None:
    """Create the missing policies: (subject, label, scope, required, exempt_when_narrowed).
    Existing ones are left as an admin set them."""
    for subject, label, scope, required, narrowed in policies:
        ApprovalPolicy.objects.get_or_create(
            subject=subject,
            defaults={
                "label": label,
                "scope": scope,
                "required": required,
                "exempt_when_narrowed": narrowed,
            },
        )


def approvals_schedule_load_defaults() -> None:
    from opsportal.schedules import periodic_task_ensure

    periodic_task_ensure(
        name="Approvals: expire requests nobody decided in time",
        task="approvals.sweep",
        every_seconds=60,
        description="A request waiting for a second person longer than its policy allows is "
        "dropped (the operation or restore does not run) and the requester sees why.",
    )
