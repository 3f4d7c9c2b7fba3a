"""The incident changelist (my team's open incidents first), the short opening form
(through the service) and the incident page with its workflow panel; the panel's buttons
are the views in incidents.admin.workflow."""

from django.contrib import admin
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import PermissionDenied
from django.utils.html import format_html
from django.utils.translation import gettext

from incidents import selectors, services
from incidents.admin import display
from incidents.admin.display import (
    IncidentPaginator,
    elapsed_text,
    timeline_rows,
)
from incidents.admin.postmortem import IncidentPostmortemViews
from incidents.admin.workflow import IncidentWorkflowViews
from incidents.forms import IncidentOpenForm
from incidents.models import ActionItem, Incident, Severity
from opsportal.operations.services import EVIDENCE_DOWNLOAD_PERMISSION


class ActionItemInline(admin.TabularInline):
    model = ActionItem
    # No blank row on every page view (each renders a select of every user); "Add another
    # follow-up action item" adds one when the review is written.
    extra = 0
    fields = ["description", "owner", "due_date", "done"]
    autocomplete_fields = []
    verbose_name = "follow-up action item"


@admin.register(Incident)
class IncidentAdmin(IncidentPostmortemViews, IncidentWorkflowViews, admin.ModelAdmin):
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

    def get_paginator(self, request, queryset, per_page, orphans=0, allow_empty_first_page=True):
        from django.contrib.admin.views.main import SEARCH_VAR

        searching = bool(request.GET.get(SEARCH_VAR, "").strip())
        return IncidentPaginator(
            queryset,
            per_page,
            orphans,
            allow_empty_first_page,
            count_up_to=display.COUNT_MATCHES_UP_TO if searching else None,
        )

    # --- the changelist: my team's open incidents first --------------------------------
    # Shown as their own short list above the full one: ordering the whole table by "mine
    # first" would sort every row on each page view, while these two queries each walk an
    # index ((team, status, -detected_at) and (-detected_at, -id)).

    change_list_template = "admin/incidents/incident/change_list.html"

    def changelist_view(self, request, extra_context=None):
        extra_context = extra_context or {}
        if request.user.is_authenticated and not request.GET:
            extra_context["my_open_incidents"] = selectors.incidents_open_for_member(
                user=request.user, limit=20
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
                step.can_run = services.incident_step_can_run(step=step, actor=request.user)
            runbooks, suggested = selectors.runbooks_with_suggestion(incident=incident)
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
                evidence=selectors.incident_evidence(incident=incident),
                related_alerts=selectors.incident_related_alerts(incident=incident),
                grouped_incidents=selectors.incident_grouped(incident=incident),
                review_missing=services.incident_review_missing(incident=incident),
                # "Mark mitigated" on the spot once a step that changes a system succeeded.
                mitigated_by=services.incident_mark_mitigated_step(
                    incident=incident, steps=steps, actor=request.user
                ),
                **_postmortem_context(incident, allowed),
            )
        return super().change_view(request, object_id, form_url, extra_context)


def _postmortem_context(incident, allowed) -> dict:
    """The post-incident review panel: only on a resolved or closed incident; the commit
    button only for whoever may edit the review, and only once the repository exists."""
    from incidents.services.postmortem import FILE_PERMISSION, POSTMORTEM_READY
    from opsportal.documents import document_store

    if incident.status not in POSTMORTEM_READY:
        return {"postmortem_ready": False}
    can_file = allowed(FILE_PERMISSION)
    store = document_store() if can_file else None
    return {
        "postmortem_ready": True,
        "can_file_postmortem": can_file,
        "postmortem_store": store.describe() if store and store.is_set_up() else "",
        "postmortem_not_set_up": (
            store.not_set_up_reason()
            if store and not store.is_set_up()
            else ("" if store else "No configuration repository is configured.")
        ),
    }
