"""The incident page's post-incident review draft: download it as Markdown, open it as a
printable page (both for whoever may view the incident), and commit it to the configuration
Git repository (for whoever may edit the incident's review). Mixed into IncidentAdmin."""

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse

from incidents import services
from incidents.models import Incident
from incidents.services.postmortem import FILE_PERMISSION, postmortem_markdown
from opsportal.admin_mixins import message_refusal


class IncidentPostmortemViews:
    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path(
                "<id:pk>/postmortem/download/",
                view(self.postmortem_download_view),
                name="incidents_incident_postmortem_download",
            ),
            path(
                "<id:pk>/postmortem/print/",
                view(self.postmortem_print_view),
                name="incidents_incident_postmortem_print",
            ),
            path(
                "<id:pk>/postmortem/commit/",
                view(self.postmortem_commit_view),
                name="incidents_incident_postmortem_commit",
            ),
            *super().get_urls(),
        ]

    def _postmortem_incident(self, request, pk) -> Incident:
        incident = get_object_or_404(Incident, pk=pk)
        if not self.has_view_permission(request, incident):
            raise PermissionDenied
        return incident

    def _postmortem_back(self, request, incident, refusal) -> HttpResponseRedirect:
        message_refusal(self, request, refusal)
        return HttpResponseRedirect(reverse("admin:incidents_incident_change", args=[incident.pk]))

    def postmortem_download_view(self, request, pk):
        incident = self._postmortem_incident(request, pk)
        try:
            draft = services.incident_postmortem(incident=incident)
        except services.IncidentRefused as exc:
            return self._postmortem_back(request, incident, exc)
        response = HttpResponse(
            postmortem_markdown(draft), content_type="text/markdown; charset=utf-8"
        )
        # The slug is ASCII letters, digits and dashes: nothing to quote in the header.
        name = f"postmortem-{services.postmortem_file_name(incident)}"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        response["Cache-Control"] = "no-store"
        return response

    def postmortem_print_view(self, request, pk):
        incident = self._postmortem_incident(request, pk)
        try:
            draft = services.incident_postmortem(incident=incident)
        except services.IncidentRefused as exc:
            return self._postmortem_back(request, incident, exc)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Post-incident review: incident #{incident.pk}",
            "incident": incident,
            "draft": draft,
        }
        return TemplateResponse(request, "admin/incidents/incident/postmortem_print.html", context)

    def postmortem_commit_view(self, request, pk):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        incident = self._postmortem_incident(request, pk)
        if not request.user.has_perm(FILE_PERMISSION):
            raise PermissionDenied
        try:
            filed = services.incident_postmortem_file(incident=incident, actor=request.user)
        except services.IncidentRefused as exc:
            return self._postmortem_back(request, incident, exc)
        if filed.changed:
            message = (
                f"Post-incident review draft committed as {filed.path} "
                f"(commit {filed.revision[:12]}{', pushed' if filed.pushed else ''})."
            )
        else:
            message = f"{filed.path} already holds this draft; nothing new was committed."
        self.message_user(request, message, messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:incidents_incident_change", args=[incident.pk]))
