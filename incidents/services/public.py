"""Incidents on the public status page: publishing an incident with a public title, posting
its public updates (which also go to the status page's email subscribers), and the status
page's source of public incidents (plugged in from IncidentsConfig.ready())."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from django.db import transaction
from django.db.models import Prefetch, Q
from django.utils import timezone

from incidents.models import ACTIVE_STATUSES, Incident, PublicIncident, PublicUpdate
from opsportal.actors import acting_user
from opsportal.audit.models import AuditAction
from opsportal.audit.services import audit_record
from opsportal.refusals import ServiceRefused
from opsportal.statuspage import sources
from opsportal.statuspage.services import status_refresh_soon, subscribers_notify

PERMISSION = "incidents.publish_incident"
STATUSES = dict(sources.UpdateStatus.CHOICES)


class PublicIncidentRefused(ServiceRefused):
    pass


def _require(actor) -> None:
    if acting_user(actor) is None or not actor.has_perm(PERMISSION):
        raise PublicIncidentRefused(
            f"Publishing an incident needs the permission {PERMISSION}; "
            f"{actor or 'nobody'} does not hold it."
        )


@transaction.atomic
def incident_publish(
    *,
    incident: Incident,
    title: str,
    components: Iterable = (),
    component_state: str = "",
    actor,
) -> PublicIncident:
    """Show the incident on the status page under a public title (or change what it shows)."""
    _require(actor)
    title = title.strip()
    if not title:
        raise PublicIncidentRefused("A public incident needs a public title.")
    valid_states = {value for value, _ in PublicIncident._meta.get_field("component_state").choices}
    if component_state and component_state not in valid_states:
        raise PublicIncidentRefused(f"{component_state!r} is not a component state.")
    public, created = PublicIncident.objects.get_or_create(
        incident=incident,
        defaults={"title": title, "published_at": timezone.now()},
    )
    public.title = title
    public.component_state = component_state
    public.save()
    public.components.set(list(components))
    audit_record(
        action=AuditAction.CREATE if created else AuditAction.CHANGE,
        obj=public,
        actor=actor,
        message=f"Incident #{incident.pk} {'published' if created else 'public details changed'}"
        f" on the status page as {title!r}.",
    )
    status_refresh_soon()
    return public


@transaction.atomic
def incident_public_update_post(
    *, public_incident: PublicIncident, status: str, message: str, actor
) -> PublicUpdate:
    """Post a public update; subscribers of the affected components are emailed (rows now,
    delivered in the background). A "resolved" update ends the incident publicly."""
    _require(actor)
    if status not in STATUSES:
        raise PublicIncidentRefused(f"{status!r} is not a public update status.")
    message = message.strip()
    if not message:
        raise PublicIncidentRefused("A public update needs a message.")
    public = PublicIncident.objects.select_for_update().get(pk=public_incident.pk)
    if public.resolved_at is not None:
        raise PublicIncidentRefused(
            "This incident was resolved publicly; its page no longer takes updates."
        )
    now = timezone.now()
    update = PublicUpdate.objects.create(
        public_incident=public, at=now, status=status, message=message, posted_by=actor
    )
    if status == sources.UpdateStatus.RESOLVED:
        public.resolved_at = now
        public.save(update_fields=["resolved_at"])
    audit_record(
        action=AuditAction.CREATE,
        obj=update,
        actor=actor,
        message=f"Public update ({STATUSES[status]}) on incident #{public.incident_id}.",
    )
    subscribers_notify(
        component_ids=list(public.components.values_list("pk", flat=True)),
        subject=f"[{STATUSES[status]}] {public.title}",
        body=f"{public.title}\n\n{STATUSES[status]}: {message}\n\nPosted {now:%Y-%m-%d %H:%M} UTC.",
        about=update,
    )
    status_refresh_soon()
    return update


def _record(public: PublicIncident) -> sources.PublicIncident:
    resolved = public.resolved_at
    if resolved is None and public.incident.status not in ACTIVE_STATUSES:
        # Ended internally without a public "resolved": not shown as ongoing for ever.
        resolved = public.incident.resolved_at or public.incident.closed_at or public.published_at
    return sources.PublicIncident(
        id=public.incident_id,
        title=public.title,
        started_at=public.published_at,
        resolved_at=resolved,
        component_ids=tuple(c.pk for c in public.components.all()),
        component_state=public.component_state,
        updates=tuple(
            sources.PublicUpdate(at=u.at, status=u.status, message=u.message)
            for u in public.updates.all()
        ),
    )


def _public_queryset():
    # Only the incident's status and end times are read; nothing else of it leaves here.
    return (
        PublicIncident.objects.select_related("incident")
        .prefetch_related(
            "components", Prefetch("updates", queryset=PublicUpdate.objects.order_by("-at", "-id"))
        )
        .only(
            "id",
            "title",
            "published_at",
            "resolved_at",
            "component_state",
            "incident_id",
            "incident__status",
            "incident__resolved_at",
            "incident__closed_at",
        )
    )


class IncidentsPublicSource:
    """The status page's view of incidents: only PublicIncident rows and their updates."""

    def incidents(self, *, since: dt.datetime | None) -> list[sources.PublicIncident]:
        rows = _public_queryset()
        if since is not None:
            rows = rows.filter(
                Q(resolved_at__isnull=True) | Q(resolved_at__gte=since) | Q(published_at__gte=since)
            )
        return [_record(p) for p in rows]

    def incident(self, *, pk: int) -> sources.PublicIncident | None:
        public = _public_queryset().filter(incident_id=pk).first()
        return _record(public) if public else None
