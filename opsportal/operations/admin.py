from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.utils.html import format_html

from opsportal.admin_mixins import ReadOnlyAdminMixin, message_refusal
from opsportal.operations.kinds import KINDS
from opsportal.operations.models import Evidence, Operation, OperationStatus
from opsportal.operations.services import (
    operation_cancel,
    operation_permission,
)
from opsportal.refusals import ServiceRefused


@admin.register(Operation)
class OperationAdmin(admin.ModelAdmin):
    """Every operation run on a real system, with its output. Operations are requested from
    an incident's checklist (or by maintenance and monitoring); here they are read and,
    while still queued, cancelled."""

    list_display = [
        "id",
        "kind",
        "target",
        "status_coloured",
        "requested_by",
        "incident",
        "requested_at",
        "duration",
    ]
    list_filter = ["status", "kind", "changing", ("requested_at", admin.DateFieldListFilter)]
    search_fields = ["target__name", "reason", "output", "error"]
    list_select_related = ["target", "requested_by", "incident"]
    show_full_result_count = False
    readonly_fields = [f.name for f in Operation._meta.fields]
    # The page's order, named: the columns shared with every job (opsportal.jobs.JobFields)
    # would otherwise come first.
    fields = [
        "id",
        "kind",
        "target",
        "params",
        "changing",
        "requested_by",
        "reason",
        "incident",
        "status",
        "output",
        "result",
        "preview",
        "error",
        "requested_at",
        "started_at",
        "finished_at",
        "dispatch_count",
        "last_dispatched_at",
        "time_limit_seconds",
    ]
    actions = ["cancel_queued"]

    @admin.display(description="Status", ordering="status")
    def status_coloured(self, operation):
        css = {
            "succeeded": "status-ok",
            "failed": "status-failing",
            "cancelled": "status-neutral",
        }.get(operation.status, "status-pending")
        return format_html('<strong class="{}">{}</strong>', css, operation.get_status_display())

    @admin.display(description="Took")
    def duration(self, operation):
        seconds = operation.duration_seconds
        return "—" if seconds is None else f"{seconds:.1f} s"

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_cancel_permission(self, request):
        # Offered to whoever may run some kind of operation; the service then checks, per
        # operation, the permission to run that one's kind.
        return any(request.user.has_perm(operation_permission(kind)) for kind in KINDS)

    @admin.action(
        description="Cancel the selected queued (or awaiting approval) operations",
        permissions=["cancel"],
    )
    def cancel_queued(self, request, queryset):
        cancelled = 0
        for operation in queryset.filter(
            status__in=[OperationStatus.QUEUED, OperationStatus.AWAITING]
        ).select_related("target"):
            try:
                operation_cancel(operation=operation, actor=request.user)
                cancelled += 1
            except ServiceRefused as refusal:
                message_refusal(self, request, refusal, messages.WARNING)
            except PermissionDenied as refusal:
                message_refusal(self, request, refusal)
        self.message_user(
            request,
            f"Cancelled {cancelled} queued operation{'' if cancelled == 1 else 's'}.",
            messages.SUCCESS if cancelled else messages.WARNING,
        )


@admin.register(Evidence)
class EvidenceAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    deletable = False  # kept as history: not deleted from the admin either
    list_display = [
        "name",
        "incident",
        "sha256",
        "size_bytes",
        "captured_by",
        "captured_at",
        "source_system",
    ]
    list_select_related = ["incident", "captured_by"]
    readonly_fields = [f.name for f in Evidence._meta.fields]
