"""Acknowledge from the message: what an escalation page says and links to, the signed
single-use "Acknowledge" links, and the follow-up everyone paged gets once the incident is
acknowledged or resolved.

A link is signed (Django's signing, with the portal's SECRET_KEY) over the link row, the
incident and the person, and carries a random secret of which only a hash is stored. It
works once (the row's `used_at` is set by a compare-and-set in the same transaction as the
acknowledgement) and until it expires. Opening it shows a page with one button; only the
button (a POST) acknowledges, so a mail scanner that follows links changes nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.core import signing
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from incidents.models import AcknowledgeLink, EscalationPage, Incident, Status
from opsportal.audit import context
from opsportal.audit.models import AuditSource
from opsportal.people.models import Contact, Notification, NotificationChannelKind
from opsportal.people.services import notify_destinations
from opsportal.refusals import ServiceRefused

SALT = "incidents.acknowledge-link"


class LinkRefused(ServiceRefused):
    """The link cannot acknowledge (used, expired, changed, another incident's); `gone`
    when it was good once (used or expired) rather than never."""

    def __init__(self, message: str, *, gone: bool = False):
        super().__init__(message)
        self.gone = gone


def incident_url(incident: Incident) -> str:
    return settings.PORTAL_URL + reverse("admin:incidents_incident_change", args=[incident.pk])


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def acknowledge_link_create(
    *, incident: Incident, contact: Contact, now: dt.datetime | None = None
) -> str:
    """A new link that acknowledges `incident` as `contact`, once, for
    ACKNOWLEDGE_LINK_MINUTES."""
    now = now or timezone.now()
    secret = secrets.token_urlsafe(16)
    link = AcknowledgeLink.objects.create(
        incident=incident,
        contact=contact,
        secret_hash=_hash(secret),
        created_at=now,
        expires_at=now + dt.timedelta(minutes=settings.ACKNOWLEDGE_LINK_MINUTES),
    )
    token = signing.dumps({"l": link.pk, "i": incident.pk, "c": contact.pk, "s": secret}, salt=SALT)
    return settings.PORTAL_URL + reverse(
        "incidents:acknowledge_link", kwargs={"incident_id": incident.pk, "token": token}
    )


def acknowledge_link_check(
    *, incident_id: int, token: str, now: dt.datetime | None = None
) -> AcknowledgeLink:
    """The link's row if it may acknowledge now; LinkRefused (with the reason for the
    person holding it) if not. Changes nothing."""
    now = now or timezone.now()
    try:
        payload = signing.loads(token, salt=SALT)
        link_id, signed_incident, contact_id, secret = (
            int(payload["l"]),
            int(payload["i"]),
            int(payload["c"]),
            str(payload["s"]),
        )
    except (signing.BadSignature, KeyError, TypeError, ValueError) as exc:
        raise LinkRefused(
            "This acknowledge link is not valid: it was changed or cut short on the way. "
            "Open the incident in the portal to acknowledge it there."
        ) from exc
    if signed_incident != incident_id:
        raise LinkRefused(
            f"This acknowledge link belongs to incident #{signed_incident}, not to "
            f"incident #{incident_id}; nothing was acknowledged."
        )
    link = (
        AcknowledgeLink.objects.select_related("incident", "contact")
        .filter(pk=link_id, incident_id=incident_id, contact_id=contact_id)
        .first()
    )
    if link is None or not secrets.compare_digest(link.secret_hash, _hash(secret)):
        raise LinkRefused("This acknowledge link is not valid (it no longer exists).")
    if link.used_at is not None:
        raise LinkRefused(
            f"This acknowledge link was already used, at {link.used_at:%Y-%m-%d %H:%M:%S} UTC. "
            "Each link works once.",
            gone=True,
        )
    if link.expires_at <= now:
        raise LinkRefused(
            f"This acknowledge link expired at {link.expires_at:%Y-%m-%d %H:%M:%S} UTC. "
            "Open the incident in the portal to acknowledge it there.",
            gone=True,
        )
    return link


def incident_acknowledge_by_link(
    *, incident_id: int, token: str, remote_addr: str | None = None, now: dt.datetime | None = None
) -> Incident:
    """Acknowledge as the person the link was sent to (audited with source "link"). A link
    that may not (see acknowledge_link_check), or an incident someone acknowledged already,
    is refused and nothing changes."""
    # Imported here: the lifecycle pages through this module.
    from incidents.services._common import IncidentRefused
    from incidents.services.lifecycle import incident_acknowledge

    now = now or timezone.now()
    with transaction.atomic():
        link = acknowledge_link_check(incident_id=incident_id, token=token, now=now)
        if not AcknowledgeLink.objects.filter(pk=link.pk, used_at__isnull=True).update(used_at=now):
            raise LinkRefused(
                "This acknowledge link was already used. Each link works once.", gone=True
            )
        incident = Incident.objects.select_for_update().get(pk=incident_id)
        if incident.status != Status.OPEN:
            raise LinkRefused(
                f"Incident #{incident.pk} is already {incident.get_status_display().lower()}"
                + (
                    f" (acknowledged at {incident.acknowledged_at:%Y-%m-%d %H:%M:%S} UTC)"
                    if incident.acknowledged_at
                    else ""
                )
                + "; this link changed nothing."
            )
        contact = link.contact
        user = contact.user if contact.user_id and contact.user.is_active else None
        with context.acting(actor=user, source=AuditSource.LINK, remote_addr=remote_addr):
            try:
                return incident_acknowledge(
                    incident=incident,
                    actor=user,
                    note=f"from the acknowledge link sent to {contact.name}",
                    source="link",
                    by=contact.name,
                )
            except IncidentRefused as refusal:
                raise LinkRefused(refusal.message) from refusal


# --- what a page says -------------------------------------------------------------------


def _subject(incident: Incident, page: EscalationPage) -> str:
    what = "New incident" if page.sequence == 0 else "Not acknowledged yet"
    return f"[{incident.severity_label}] {what}: {incident.title} (incident #{incident.pk})"


def _body(incident: Incident, page: EscalationPage, links: list[dict]) -> str:
    lines = [
        incident.get_severity_display(),
        f"Category: {incident.get_category_display()}",
        f"Status: {incident.get_status_display()}",
        f"Escalation: {page.description}",
        "",
        "Symptoms:",
        incident.symptoms or "—",
        "",
    ]
    lines += [f"{link['text']}: {link['url']}" for link in links]
    return "\n".join(lines)


def page_notify(
    *, page: EscalationPage, incident: Incident, now: dt.datetime
) -> tuple[list[Notification], str]:
    """Queue the notifications of one escalation page: each person named by its step by
    email (and pager address) with their own Acknowledge link, the team's chat webhooks
    with buttons. Returns them and a sentence for the timeline."""
    from incidents.services.escalation import contacts_for_page  # it imports this module

    step = page.step
    contacts, team = contacts_for_page(page, at=now)
    open_link = {"text": "Open the incident", "url": incident_url(incident)}
    created: list[Notification] = []
    reached: list[str] = []
    for contact in contacts:
        addresses = [a for a in (contact.email, contact.pager_email) if a] if step.email else []
        if not addresses:
            continue
        links = [
            {
                "text": "Acknowledge",
                "url": acknowledge_link_create(incident=incident, contact=contact, now=now),
                "style": "primary",
            },
            open_link,
        ]
        created += notify_destinations(
            emails=addresses,
            subject=_subject(incident, page),
            body=_body(incident, page, links),
            about=incident,
            links=links,
        )
        reached.append(f"{contact.name} by email ({', '.join(addresses)})")
    if step.email and step.target == "team" and team.email:
        created += notify_destinations(
            emails=[team.email],
            subject=_subject(incident, page),
            body=_body(incident, page, [open_link]),
            about=incident,
            links=[open_link],
        )
        reached.append(f"{team.name} by email ({team.email})")
    webhooks = list(team.webhooks.filter(active=True).order_by("name")) if step.chat else []
    if webhooks:
        # A chat room is shared: its Acknowledge button acts as the first person this step
        # pages (and says so), so whoever clicks it answers for them.
        links = [open_link]
        if contacts:
            links.insert(
                0,
                {
                    "text": f"Acknowledge (as {contacts[0].name})",
                    "url": acknowledge_link_create(incident=incident, contact=contacts[0], now=now),
                    "style": "primary",
                },
            )
        created += notify_destinations(
            webhook_ids=[w.pk for w in webhooks],
            subject=_subject(incident, page),
            body=_body(incident, page, []),
            about=incident,
            links=links,
        )
        reached.append("chat " + ", ".join(w.name for w in webhooks))
    if not reached:
        who = "nobody is on call" if step.target == "on_call" else "nobody has an address"
        return created, f"Nobody could be paged: {who} in {team.name} and no channel was left."
    return created, "Paged " + "; ".join(reached) + " (queued for delivery)."


# --- follow-ups -------------------------------------------------------------------------


def incident_followup_notify(*, incident: Incident, what: str, by: str) -> list[Notification]:
    """Tell everyone paged for the incident so far, on the channels they were paged on,
    that it was acknowledged or resolved (what: "Acknowledged" / "Resolved")."""
    paged = (
        Notification.objects.filter(
            about_type=ContentType.objects.get_for_model(Incident), about_id=str(incident.pk)
        )
        .values_list("channel", "recipient", "webhook_id")
        .distinct()
    )
    emails = sorted({r for c, r, _ in paged if c == NotificationChannelKind.EMAIL and r})
    webhooks = sorted({w for c, _, w in paged if c == NotificationChannelKind.WEBHOOK and w})
    if not (emails or webhooks):
        return []
    link = {"text": "Open the incident", "url": incident_url(incident)}
    return notify_destinations(
        emails=emails,
        webhook_ids=webhooks,
        subject=f"[{incident.severity_label}] {what} by {by}: {incident.title} "
        f"(incident #{incident.pk})",
        body=f"{what} by {by}. No further pages will be sent for it.\n\n"
        f"{link['text']}: {link['url']}"
        if what == "Acknowledged"
        else f"{what} by {by}.\n\n{link['text']}: {link['url']}",
        about=incident,
        links=[link],
    )
