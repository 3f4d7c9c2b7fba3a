"""The approval page (linked from the notification): what is asked, by whom and why, and the
Approve / Reject buttons with a reason; the policies an admin edits."""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from opsportal.admin_mixins import ReadOnlyAdminMixin, message_refusal
from opsportal.approvals.models import (
    ApprovalPolicy,
    ApprovalRequest,
    ApprovalStatus,
    approve_permission,
)
from opsportal.approvals.services import ApprovalRefused, approval_decide


@admin.register(ApprovalPolicy)
class ApprovalPolicyAdmin(admin.ModelAdmin):
    """Per operation kind (and for restores): whether a person's request waits for a second
    person. Created by load_defaults; an admin switches them on or off."""

    list_display = ["label", "subject", "scope", "required", "expires_after_minutes"]
    list_filter = ["required", "scope"]
    list_editable = ["required", "expires_after_minutes"]
    readonly_fields = ["subject", "label", "scope"]
    fields = ["subject", "label", "scope", "required", "expires_after_minutes"]
    show_full_result_count = False

    def get_fields(self, request, obj=None):
        fields = list(super().get_fields(request, obj))
        if obj is not None and obj.exempt_when_narrowed:
            fields.append("exempt_when_narrowed")
        return fields

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(ApprovalRequest)
class ApprovalRequestAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    deletable = False  # kept as history
    change_form_template = "admin/approvals/approvalrequest/change_form.html"
    list_display = [
        "id",
        "summary",
        "status_coloured",
        "requested_by",
        "requested_at",
        "expires_at",
        "decided_by",
    ]
    list_filter = ["status", "scope"]
    list_select_related = ["requested_by", "decided_by"]
    search_fields = ["summary", "reason", "decision_reason"]
    show_full_result_count = False
    fields = [
        "summary",
        "reason",
        "status",
        "requested_by",
        "requested_at",
        "expires_at",
        "decided_by",
        "decided_at",
        "decision_reason",
        "scope",
        "policy_subject",
        "subject_link",
    ]
    readonly_fields = fields

    @admin.display(description="Status", ordering="status")
    def status_coloured(self, approval):
        css = {
            ApprovalStatus.APPROVED: "status-ok",
            ApprovalStatus.REJECTED: "status-failing",
            ApprovalStatus.PENDING: "status-pending",
        }.get(approval.status, "status-neutral")
        return format_html('<strong class="{}">{}</strong>', css, approval.get_status_display())

    @admin.display(description="Request")
    def subject_link(self, approval):
        subject = approval.subject
        if subject is None:
            return "—"
        opts = subject._meta
        url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[subject.pk])
        return format_html('<a href="{}">{}</a>', url, subject)

    def get_urls(self):
        return [
            path(
                "<id:pk>/decide/",
                self.admin_site.admin_view(self.decide_view),
                name="approvals_approvalrequest_decide",
            ),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        approval = self.get_object(request, object_id)
        extra = dict(extra_context or {})
        if approval is not None:
            extra.update(
                {
                    "can_decide": approval.pending
                    and request.user.has_perm(approve_permission(approval.scope)),
                    "own_request": approval.requested_by_id == request.user.pk,
                    "expired_now": approval.pending and timezone.now() >= approval.expires_at,
                    "approval": approval,
                }
            )
        return super().change_view(request, object_id, form_url, extra_context=extra)

    def decide_view(self, request, pk):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        approval = get_object_or_404(ApprovalRequest, pk=pk)
        if not request.user.has_perm(approve_permission(approval.scope)):
            raise PermissionDenied
        approve = request.POST.get("decision") == "approve"
        try:
            approval_decide(
                approval=approval,
                actor=request.user,
                approve=approve,
                reason=request.POST.get("reason", ""),
            )
        except (ApprovalRefused, PermissionDenied) as refusal:
            message_refusal(self, request, refusal)
        else:
            self.message_user(
                request,
                f"{'Approved' if approve else 'Rejected'}: {approval.summary}."
                + (" It runs now." if approve else " It will not run."),
                messages.SUCCESS,
            )
        return HttpResponseRedirect(
            reverse("admin:approvals_approvalrequest_change", args=[approval.pk])
        )
