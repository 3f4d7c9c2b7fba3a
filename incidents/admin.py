import datetime as dt
import re

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import connection
from django.http import FileResponse, Http404, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.timezone import localtime
from django.utils.translation import gettext

from incidents import selectors, services
from incidents.forms import IncidentOpenForm, StepRunForm
from incidents.models import (
    ACTIVE_STATUSES,
    ActionItem,
    Alert,
    Incident,
    IncidentStep,
    Runbook,
    RunbookStep,
    Severity,
    Source,
    TimelineEvent,
    TimelineKind,
)
from opsportal.monitoring.models import AlertState
from opsportal.operations.kinds import KINDS
from opsportal.operations.models import Evidence
from opsportal.operations.selectors import operation_target_for_alert, systems_for_kind
from opsportal.operations.services import (
    EVIDENCE_DOWNLOAD_PERMISSION,
    OPERATE_ANY_SYSTEM_PERMISSION,
    EvidenceUnavailable,
    evidence_open,
    incident_operation_targets,
)
from opsportal.systems.models import System

# "Mark mitigated" after a successful fix: from these (an open incident is acknowledged on
# the way, services.incident_mark_mitigated).
MARK_MITIGATED_FROM = ("open", "acknowledged", "investigating")


class ActionItemInline(admin.TabularInline):
    model = ActionItem
    # No blank row on every page view (each renders a select of every user); "Add another
    # follow-up action item" adds one when the review is written.
    extra = 0
    fields = ["description", "owner", "due_date", "done"]
    autocomplete_fields = []
    verbose_name = "follow-up action item"


# The incident changelist and page are what responders open during an incident, so they are
# held to the runbook's API target (p95 < 200 ms, bench/incidents_admin.py) with 100,000
# incidents. The pieces below replace per-row work that dominated the profile.

# Above this many rows (PostgreSQL's own estimate) the unfiltered changelist shows the
# planner's row estimate instead of counting every incident on each page view.
ESTIMATED_COUNT_ABOVE = 10_000


class IncidentPaginator(Paginator):
    @cached_property
    def count(self) -> int:
        query = getattr(self.object_list, "query", None)
        if query is not None and not query.where and connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
                    [Incident._meta.db_table],
                )
                row = cursor.fetchone()
            if row and row[0] > ESTIMATED_COUNT_ABOVE:
                return int(row[0])
        return super().count


class IncidentChangeList(ChangeList):
    def url_for_result(self, result) -> str:
        # The number and the title both link to the incident: reverse() once per row.
        cached = getattr(result, "_admin_change_url", None)
        if cached is None:
            cached = result._admin_change_url = super().url_for_result(result)
        return cached


def timeline_rows(events: list[TimelineEvent]) -> SafeString:
    """The timeline's table rows, built in Python: rendered through the template language,
    200 events took longer than the rest of the incident page together."""
    kinds = dict(TimelineKind.choices)
    sources = dict(Source.choices)

    def row(event: TimelineEvent) -> tuple:
        output = (
            format_html("<details><summary>output</summary><pre>{}</pre></details>", event.output)
            if event.output
            else ""
        )
        return (
            event.kind,
            f"{localtime(event.at):%Y-%m-%d %H:%M:%S}",
            kinds.get(event.kind, event.kind),
            event.actor if event.actor_id else sources.get(event.source, event.source),
            event.message,
            output,
        )

    return format_html_join(
        "\n",
        '<tr class="timeline-event timeline-{}"><td>{}</td><td>{}</td><td>{}</td>'
        "<td>{}{}</td></tr>",
        (row(event) for event in events),
    )


@admin.register(Incident)
class IncidentAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "title",
        "severity_short",
        "category",
        "status",
        "team",
        "commander",
        "detected_at",
    ]
    list_display_links = ["id", "title"]
    list_filter = [
        "status",
        "severity",
        "category",
        "team",
        ("detected_at", admin.DateFieldListFilter),
    ]
    search_fields = ["title", "symptoms"]
    list_select_related = ["team", "commander"]
    show_full_result_count = False
    list_per_page = 50
    change_form_template = "admin/incidents/incident/change_form.html"
    inlines = [ActionItemInline]
    readonly_fields = [
        "status",
        "severity",
        "source",
        "runbook",
        "reporter",
        "detected_at",
        "acknowledged_at",
        "mitigated_at",
        "resolved_at",
        "closed_at",
        "time_to_acknowledge",
        "time_to_resolve",
    ]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "title",
                    ("severity", "status"),
                    "category",
                    ("team", "commander"),
                    "affected_systems",
                    ("source", "reporter", "runbook"),
                ]
            },
        ),
        ("Details", {"fields": ["symptoms", "impact", "summary", "resolution"]}),
        (
            "Timing",
            {
                "fields": [
                    ("detected_at", "acknowledged_at", "mitigated_at"),
                    ("resolved_at", "closed_at"),
                    ("time_to_acknowledge", "time_to_resolve"),
                ]
            },
        ),
        (
            "Post-incident review (required before a SEV1/SEV2 incident closes)",
            {"fields": ["review_what_happened", "review_root_cause"]},
        ),
    ]
    filter_horizontal = ["affected_systems"]

    @admin.display(description="Time to acknowledge")
    def time_to_acknowledge(self, incident):
        return elapsed_text(incident.time_to_acknowledge)

    @admin.display(description="Time to resolve")
    def time_to_resolve(self, incident):
        return elapsed_text(incident.time_to_resolve)

    @admin.display(description="Severity", ordering="severity")
    def severity_short(self, incident):
        return incident.severity_label

    def action_checkbox(self, incident):
        # Django renders a CheckboxInput through the form template engine for every row
        # (about a third of a 200-row page); the same markup, formatted directly.
        return format_html(
            '<input type="checkbox" name="{}" value="{}" class="action-select" aria-label="{}">',
            ACTION_CHECKBOX_NAME,
            incident.pk,
            gettext("Select this object for an action - {}").format(incident),
        )

    def get_changelist(self, request, **kwargs):
        return IncidentChangeList

    paginator = IncidentPaginator

    # --- the changelist: my team's open incidents first --------------------------------
    # Shown as their own short list above the full one: ordering the whole table by "mine
    # first" would sort every row on each page view, while these two queries each walk an
    # index ((team, status, -detected_at) and (-detected_at, -id)).

    change_list_template = "admin/incidents/incident/change_list.html"

    def changelist_view(self, request, extra_context=None):
        extra_context = extra_context or {}
        if request.user.is_authenticated and not request.GET:
            extra_context["my_open_incidents"] = list(
                Incident.objects.filter(team__members=request.user, status__in=ACTIVE_STATUSES)
                .select_related("team", "commander")
                .order_by("-detected_at", "-id")[:20]
            )
        return super().changelist_view(request, extra_context)

    def get_ordering(self, request):
        return ["-detected_at", "-id"]

    # --- opening: the short form, through the service ----------------------------------

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            form = IncidentOpenForm

            class BoundOpenForm(form):
                def __init__(self, *args, **inner):
                    super().__init__(*args, user=request.user, **inner)

            kwargs["form"] = BoundOpenForm
            kwargs["fields"] = IncidentOpenForm.Meta.fields
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return [(None, {"fields": IncidentOpenForm.Meta.fields})]
        return super().get_fieldsets(request, obj)

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else self.readonly_fields

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else []

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        data = form.cleaned_data
        try:
            incident = services.incident_open(
                title=data["title"],
                severity=data["severity"],
                category=data["category"],
                team=data.get("team"),
                reporter=request.user,
                symptoms=data.get("symptoms", ""),
                affected_systems=list(data.get("affected_systems") or []),
            )
        except services.IncidentRefused as exc:
            raise PermissionDenied(exc.message) from exc
        obj.pk = incident.pk
        obj.refresh_from_db()

    def save_related(self, request, form, formsets, change):
        if change:
            super().save_related(request, form, formsets, change)

    # --- the incident page: workflow panel -------------------------------------------

    def get_object(self, request, object_id, from_field=None):
        # change_view below and Django's own change view both load the incident: once.
        cache = request.__dict__.setdefault("_incidents_loaded", {})
        key = (object_id, from_field)
        if key not in cache:
            cache[key] = super().get_object(request, object_id, from_field)
        return cache[key]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        incident = self.get_object(request, object_id)
        extra_context = extra_context or {}
        if incident is not None:
            # ModelBackend caches the user's permissions on the user after the first check,
            # so these lookups cost one pair of queries per page, not one per step.
            allowed = request.user.has_perm
            steps = list(selectors.incident_checklist(incident=incident))
            for step in steps:
                step.can_run = step.operation_kind in KINDS and request.user.has_perms(
                    services.step_run_permissions(step.operation_kind)
                )
            # One query for the choice list; the suggestion is the first of the incident's
            # category in the same (name) order selectors.runbook_suggested uses.
            runbooks = list(Runbook.objects.order_by("name"))
            suggested = next((r for r in runbooks if r.category == incident.category), None)
            extra_context.update(
                incident=incident,
                allowed_actions=services.incident_allowed_actions(incident=incident),
                can_manage=allowed("incidents.manage_incident"),
                can_note=allowed("incidents.change_incident"),
                can_do_steps=allowed("incidents.run_incident_steps"),
                can_evidence=allowed(EVIDENCE_DOWNLOAD_PERMISSION),
                checklist=steps,
                timeline=(timeline := list(selectors.incident_timeline(incident=incident))),
                timeline_rows=timeline_rows(timeline),
                runbooks=runbooks,
                suggested_runbook=suggested,
                severities=[(v, label) for v, label in Severity.choices],
                evidence=list(
                    Evidence.objects.filter(incident=incident).select_related("captured_by")
                ),
                review_missing=services.incident_review_missing(incident=incident),
                # "Mark mitigated" on the spot once a step that changes a system succeeded.
                mitigated_by=(
                    next(
                        (
                            step
                            for step in steps
                            if step.last_operation is not None
                            and step.last_operation.status == "succeeded"
                            and KINDS.get(step.last_operation.kind) is not None
                            and KINDS[step.last_operation.kind].changing
                        ),
                        None,
                    )
                    if incident.status in MARK_MITIGATED_FROM
                    and allowed("incidents.manage_incident")
                    else None
                ),
            )
        return super().change_view(request, object_id, form_url, extra_context)

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path(
                "<int:pk>/transition/<str:action>/",
                view(self.transition_view),
                name="incidents_incident_transition",
            ),
            path(
                "<int:pk>/escalate/", view(self.escalate_view), name="incidents_incident_escalate"
            ),
            path(
                "<int:pk>/mark-mitigated/",
                view(self.mark_mitigated_view),
                name="incidents_incident_mark_mitigated",
            ),
            path(
                "<int:pk>/attach-runbook/",
                view(self.attach_runbook_view),
                name="incidents_incident_attach_runbook",
            ),
            path("<int:pk>/note/", view(self.note_view), name="incidents_incident_note"),
            path(
                "<int:pk>/steps/<int:step_id>/done/",
                view(self.step_done_view),
                name="incidents_incident_step_done",
            ),
            path(
                "<int:pk>/steps/<int:step_id>/run/",
                view(self.step_run_view),
                name="incidents_incident_step_run",
            ),
            path(
                "<int:pk>/evidence/<int:evidence_id>/",
                view(self.evidence_download_view),
                name="incidents_incident_evidence",
            ),
            *super().get_urls(),
        ]

    def _back(self, incident_id):
        return HttpResponseRedirect(reverse("admin:incidents_incident_change", args=[incident_id]))

    def _incident(self, request, pk, permission):
        incident = get_object_or_404(Incident, pk=pk)
        if not self.has_view_permission(request, incident) or not request.user.has_perm(permission):
            raise PermissionDenied
        return incident

    def _refusable(self, request, incident, action, success):
        try:
            action()
        except services.IncidentRefused as exc:
            self.message_user(request, exc.message, messages.ERROR)
        else:
            self.message_user(request, success, messages.SUCCESS)
        return self._back(incident.pk)

    def transition_view(self, request, pk, action):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        incident = self._incident(request, pk, "incidents.manage_incident")
        note = request.POST.get("note", "").strip()
        calls = {
            "acknowledge": lambda: services.incident_acknowledge(
                incident=incident, actor=request.user, note=note
            ),
            "investigate": lambda: services.incident_investigate(
                incident=incident, actor=request.user, note=note
            ),
            "mitigate": lambda: services.incident_mitigate(
                incident=incident, actor=request.user, note=note
            ),
            "resolve": lambda: services.incident_resolve(
                incident=incident, actor=request.user, resolution=note
            ),
            "close": lambda: services.incident_close(
                incident=incident, actor=request.user, note=note
            ),
            "reopen": lambda: services.incident_reopen(
                incident=incident, actor=request.user, reason=note
            ),
        }
        if action not in calls:
            raise Http404("No such action.")
        return self._refusable(
            request, incident, calls[action], f"Incident #{incident.pk}: {action} done."
        )

    def mark_mitigated_view(self, request, pk):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        incident = self._incident(request, pk, "incidents.manage_incident")
        return self._refusable(
            request,
            incident,
            lambda: services.incident_mark_mitigated(
                incident=incident, actor=request.user, note=request.POST.get("note", "")
            ),
            f"Incident #{incident.pk} marked mitigated.",
        )

    def escalate_view(self, request, pk):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        incident = self._incident(request, pk, "incidents.manage_incident")
        severity = request.POST.get("severity", "")
        return self._refusable(
            request,
            incident,
            lambda: services.incident_escalate(
                incident=incident,
                severity=severity,
                actor=request.user,
                reason=request.POST.get("reason", ""),
            ),
            f"Incident #{incident.pk} escalated; the people for its new severity were paged.",
        )

    def attach_runbook_view(self, request, pk):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        incident = self._incident(request, pk, "incidents.change_incident")
        runbook = get_object_or_404(Runbook, pk=request.POST.get("runbook") or 0)
        return self._refusable(
            request,
            incident,
            lambda: services.incident_attach_runbook(
                incident=incident, runbook=runbook, actor=request.user
            ),
            f"Runbook {runbook.name!r} attached as a checklist.",
        )

    def note_view(self, request, pk):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        incident = self._incident(request, pk, "incidents.change_incident")
        return self._refusable(
            request,
            incident,
            lambda: services.incident_add_note(
                incident=incident, actor=request.user, text=request.POST.get("text", "")
            ),
            "Note added to the timeline.",
        )

    def step_done_view(self, request, pk, step_id):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        incident = self._incident(request, pk, "incidents.run_incident_steps")
        step = get_object_or_404(IncidentStep, pk=step_id, incident=incident)
        return self._refusable(
            request,
            incident,
            lambda: services.incident_step_done(
                step=step, actor=request.user, note=request.POST.get("note", "")
            ),
            f"Step {step.text!r} marked done.",
        )

    def step_run_view(self, request, pk, step_id):
        """The run page: choose the system, adjust parameters, and (for an operation that
        changes the system) confirm with a reason."""
        incident = get_object_or_404(Incident, pk=pk)
        step = get_object_or_404(
            IncidentStep.objects.select_related("target"), pk=step_id, incident=incident
        )
        if step.operation_kind not in KINDS:
            raise Http404("This step runs no operation.")
        spec = KINDS[step.operation_kind]
        if not self.has_view_permission(request, incident) or not request.user.has_perms(
            services.step_run_permissions(step.operation_kind)
        ):
            raise PermissionDenied
        # The choices are the systems the service will accept: the incident's own (and the
        # containers on its affected engines), unless the user may operate any system.
        targets = systems_for_kind(
            System.objects.all()
            if request.user.has_perm(OPERATE_ANY_SYSTEM_PERMISSION)
            else incident_operation_targets(incident=incident),
            kind=step.operation_kind,
        ).order_by("name")
        target_id, params = self._prefill(request, incident, step, targets)
        form = StepRunForm(
            request.POST or None,
            initial={"target": target_id},
            kind=step.operation_kind,
            params=params,
            targets=targets,
        )
        if request.method == "POST" and form.is_valid():
            try:
                operation = services.incident_step_run(
                    step=step,
                    actor=request.user,
                    target=form.cleaned_data["target"],
                    params=form.cleaned_data["params"],
                    reason=form.cleaned_data["reason"],
                )
            except services.IncidentRefused as exc:
                form.add_error(None, exc.message)
            else:
                self.message_user(
                    request,
                    f"{spec.label} requested (operation #{operation.pk}); its result will "
                    "appear on the step and the timeline.",
                    messages.SUCCESS,
                )
                return self._back(incident.pk)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"{'Confirm: ' if spec.changing else 'Run: '}{spec.label}",
            "incident": incident,
            "step": step,
            "spec": spec,
            "form": form,
            # Said before the user fills the form in; the service refuses it anyway.
            "refused_on_finished_incident": spec.changing and not incident.is_active,
        }
        return TemplateResponse(request, "admin/incidents/incident/run_step.html", context)

    def _prefill(self, request, incident, step, targets) -> tuple[int | None, dict]:
        """The system (and container) the run page starts with: the one the link names
        (?target=<system id>&container=<name>, as the overview's firing alerts link), else
        the step's own, else the one the incident's alert fired on. Only a system the
        operation may act on is chosen; the runbook's parameters are kept."""
        params = dict(step.operation_params or {})
        target_id = step.target_id
        system, subject = None, ""
        if re.fullmatch(r"[0-9]{1,18}", request.GET.get("target", "")):
            system = System.objects.filter(pk=int(request.GET["target"])).first()
            subject = request.GET.get("container", "")[:160]
        elif target_id is None and incident.alert_fingerprint:
            state = (
                AlertState.objects.filter(fingerprint=incident.alert_fingerprint)
                .select_related("system")
                .first()
            )
            if state is not None:
                system, subject = state.system, state.subject
        if system is not None:
            chosen = operation_target_for_alert(
                kind=step.operation_kind, system=system, subject=subject
            )
            if chosen.system is not None and targets.filter(pk=chosen.system.pk).exists():
                target_id = chosen.system.pk
                if chosen.container and "container" in KINDS[step.operation_kind].params:
                    params["container"] = chosen.container
        return target_id, params

    def evidence_download_view(self, request, pk, evidence_id):
        """Download a preserved artefact; each download, and each refused attempt, is
        recorded (chain of custody). Anyone who may see the incident gets this far; the
        service checks the download permission, so a refusal is recorded too."""
        incident = get_object_or_404(Incident, pk=pk)
        if not self.has_view_permission(request, incident):
            raise PermissionDenied
        item = get_object_or_404(Evidence, pk=evidence_id, incident=incident)
        try:
            handle = evidence_open(evidence=item, actor=request.user)
        except EvidenceUnavailable as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return self._back(incident.pk)
        return FileResponse(handle, as_attachment=True, filename=item.name)


class RunbookStepInline(admin.TabularInline):
    model = RunbookStep
    extra = 0
    fields = ["position", "phase", "text", "operation_kind", "operation_params"]


@admin.register(Runbook)
class RunbookAdmin(admin.ModelAdmin):
    list_display = ["name", "category"]
    inlines = [RunbookStepInline]


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = [
        "received_at",
        "status",
        "title",
        "severity",
        "source",
        "incident",
        "suppressed_by",
    ]
    list_filter = ["status", "severity", "source"]
    search_fields = ["title", "fingerprint"]
    list_select_related = ["incident", "suppressed_by"]
    show_full_result_count = False
    readonly_fields = [f.name for f in Alert._meta.fields] + ["systems"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


__all__ = ["Source"]


def elapsed_text(delta: dt.timedelta | None) -> str:
    """5 s, 12 min 5 s, 3 h 4 min, 2 d 3 h: what an incident review reads."""
    if delta is None:
        return "—"
    seconds = max(int(delta.total_seconds()), 0)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {seconds} s"
    return f"{seconds} s"
