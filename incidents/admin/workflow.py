"""The incident page's buttons: get_urls() views that call the services (status
transitions, "Mark mitigated", escalate, attach a runbook, add a note, tick or run a
checklist step) and download preserved evidence. Mixed into IncidentAdmin."""

import re

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import FileResponse, Http404, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse

from incidents import selectors, services
from incidents.forms import StepRunForm
from incidents.models import Incident, IncidentStep, Runbook
from opsportal.operations.kinds import KINDS, InvalidParameters, clean_params
from opsportal.operations.models import Evidence
from opsportal.operations.previews import (
    Confirmation,
    confirmation_preview,
    preview_failed_reason_message,
    preview_from_token,
)
from opsportal.operations.runners import InvalidTarget, check_target
from opsportal.operations.selectors import systems_for_kind
from opsportal.operations.services import (
    OPERATE_ANY_SYSTEM_PERMISSION,
    EvidenceUnavailable,
    evidence_open,
    incident_operation_targets,
    operation_needs_approval,
)
from opsportal.systems.models import System


def _needs_confirming(confirmation: Confirmation | None) -> bool:
    """A fresh preview was read for what was submitted: show it before anything runs."""
    return (
        confirmation is not None
        and confirmation.preview is not None
        and not (confirmation.confirmed)
    )


def _first_preview(actor, kind, targets, target_id, params) -> Confirmation | None:
    """The preview the run page opens with, for its pre-filled system and parameters."""
    target = targets.filter(pk=target_id).first() if target_id else None
    if target is None:
        return None
    try:
        cleaned = clean_params(kind, params)
        check_target(kind, target, cleaned)
    except (InvalidParameters, InvalidTarget):
        return None  # the form says what is wrong once submitted
    return confirmation_preview(
        token="", actor=actor, kind=kind, target=target, params=cleaned, submitted=False
    )


class IncidentWorkflowViews:
    """The incident page's per-incident views (mixed into IncidentAdmin, before ModelAdmin):
    each checks who may use it, calls one service and reports its refusal or success."""

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path(
                "<id:pk>/transition/<str:action>/",
                view(self.transition_view),
                name="incidents_incident_transition",
            ),
            path("<id:pk>/escalate/", view(self.escalate_view), name="incidents_incident_escalate"),
            path(
                "<id:pk>/mark-mitigated/",
                view(self.mark_mitigated_view),
                name="incidents_incident_mark_mitigated",
            ),
            path(
                "<id:pk>/attach-runbook/",
                view(self.attach_runbook_view),
                name="incidents_incident_attach_runbook",
            ),
            path("<id:pk>/note/", view(self.note_view), name="incidents_incident_note"),
            path(
                "<id:pk>/steps/<id:step_id>/done/",
                view(self.step_done_view),
                name="incidents_incident_step_done",
            ),
            path(
                "<id:pk>/steps/<id:step_id>/run/",
                view(self.step_run_view),
                name="incidents_incident_step_run",
            ),
            path(
                "<id:pk>/evidence/<id:evidence_id>/",
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
        if action not in services.TRANSITIONS:
            raise Http404("No such action.")
        return self._refusable(
            request,
            incident,
            lambda: services.incident_transition(
                incident=incident, action=action, actor=request.user, note=note
            ),
            f"Incident #{incident.pk}: {action} done.",
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
        chosen = request.POST.get("runbook", "")
        runbook = (
            Runbook.objects.filter(pk=int(chosen)).first()
            if re.fullmatch(r"[0-9]{1,18}", chosen)
            else None
        )
        if runbook is None:
            # "x", a 25-digit id or one deleted meanwhile: a message, not an error page.
            self.message_user(request, "Choose a runbook from the list.", messages.ERROR)
            return self._back(incident.pk)
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
        # ?target=<system id>&container=<name>: the overview's firing alerts link here so.
        linked = request.GET.get("target", "")
        target_id, params = selectors.step_run_prefill(
            incident=incident,
            step=step,
            targets=targets,
            linked_system_id=int(linked) if re.fullmatch(r"[0-9]{1,18}", linked) else None,
            linked_container=request.GET.get("container", "")[:160],
        )
        # Two-person approval: said on the page; break-glass offered during a SEV1 only.
        needs_approval = operation_needs_approval(
            kind=step.operation_kind, params=params or {}, actor=request.user
        )
        form = StepRunForm(
            request.POST or None,
            initial={"target": target_id},
            kind=step.operation_kind,
            params=params,
            targets=targets,
            break_glass=needs_approval and incident.allows_break_glass,
        )
        # What a change would do now, read live, shown before it runs (previews.py).
        token = request.POST.get("preview_token", "")
        shown = preview_from_token(token=token, actor=request.user) if spec.changing else None
        if shown and shown.get("failed"):
            form.fields["reason"].error_messages["required"] = preview_failed_reason_message(shown)
        confirmation = Confirmation(shown, token) if shown else None
        if request.method == "POST" and form.is_valid() and spec.changing:
            confirmation = confirmation_preview(
                token=token,
                actor=request.user,
                kind=step.operation_kind,
                target=form.cleaned_data["target"],
                params=form.cleaned_data["params"],
                submitted=True,
            )
        if request.method == "POST" and form.is_valid() and not _needs_confirming(confirmation):
            try:
                operation = services.incident_step_run(
                    step=step,
                    actor=request.user,
                    target=form.cleaned_data["target"],
                    params=form.cleaned_data["params"],
                    reason=form.cleaned_data["reason"],
                    preview=confirmation.confirmed if confirmation else None,
                    break_glass_reason=form.cleaned_data.get("break_glass_reason", ""),
                )
            except services.IncidentRefused as exc:
                form.add_error(None, exc.message)
            except ValidationError as exc:
                form.add_error(None, exc)  # the service's own field errors (a change's reason)
            else:
                self.message_user(
                    request,
                    f"{spec.label} requested (operation #{operation.pk}); "
                    + (
                        "it awaits a second person's approval (they were notified), then "
                        if operation.status == "awaiting"
                        else ""
                    )
                    + "its result will appear on the step and the timeline.",
                    messages.SUCCESS,
                )
                return self._back(incident.pk)
        elif request.method == "GET" and spec.changing:
            confirmation = _first_preview(
                request.user, step.operation_kind, targets, target_id, params
            )
        context = {
            **self.admin_site.each_context(request),
            **(confirmation.context if confirmation else {}),
            "opts": self.opts,
            "title": f"{'Confirm: ' if spec.changing else 'Run: '}{spec.label}",
            "incident": incident,
            "step": step,
            "spec": spec,
            "form": form,
            # Said before the user fills the form in; the service refuses it anyway.
            "refused_on_finished_incident": spec.changing and not incident.is_active,
            "needs_approval": needs_approval,
        }
        return TemplateResponse(request, "admin/incidents/incident/run_step.html", context)

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
