import csv
import json

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseBadRequest, HttpResponseRedirect, StreamingHttpResponse
from django.urls import path, reverse
from django.utils.html import format_html

from opsportal.admin_mixins import ReadOnlyAdminMixin
from opsportal.audit.models import AuditRecord

CSV_COLUMNS = [
    "id",
    "at",
    "actor_name",
    "source",
    "action",
    "object_type",
    "object_id",
    "object_repr",
    "outcome",
    "message",
    "changes",
    "remote_addr",
    "hash",
]


class _Echo:
    def write(self, value):
        return value


@admin.register(AuditRecord)
class AuditRecordAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    deletable = False  # kept as history: not deleted from the admin either
    list_display = [
        "at",
        "actor_name",
        "source",
        "action",
        "object_type",
        "object_link",
        "outcome",
        "short_message",
    ]
    list_filter = [
        "action",
        "source",
        "outcome",
        "object_type",
        ("at", admin.DateFieldListFilter),
        ("actor", admin.RelatedOnlyFieldListFilter),
    ]
    search_fields = ["object_repr", "object_id", "message", "actor_name"]
    date_hierarchy = "at"
    show_full_result_count = False
    list_per_page = 100
    change_list_template = "admin/audit/auditrecord/change_list.html"
    readonly_fields = [f.name for f in AuditRecord._meta.fields]

    @admin.display(description="Object")
    def object_link(self, record):
        return f"{record.object_repr} (#{record.object_id})" if record.object_id else "—"

    @admin.display(description="Message")
    def short_message(self, record):
        text = record.message
        return format_html("{}", text if len(text) <= 120 else text[:117] + "…")

    def get_urls(self):
        return [
            path(
                "export.csv",
                self.admin_site.admin_view(self.export_csv),
                name="audit_auditrecord_export",
            ),
            *super().get_urls(),
        ]

    def export_csv(self, request):
        """The records the changelist shows with its current filters, as CSV."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            changelist = self.get_changelist_instance(request)
        except IncorrectLookupParameters:
            # The changelist itself shows such a filter as "?e=1"; a download says why (without
            # echoing the value back).
            return HttpResponseBadRequest(
                "The export's filters cannot be applied: one names a field the audit log does "
                "not have, or a value of the wrong kind (an id that is not a number, a date "
                "that is not a date). Open the audit log, choose the filters there and use its "
                "export link.",
                content_type="text/plain; charset=utf-8",
            )
        queryset = changelist.get_queryset(request).order_by("id")
        # A download that gunicorn's worker timeout would cut short must not start: a browser
        # may keep a cut file that looks whole. More than the limit is refused, saying how
        # to get them (narrower filters, or the API's export, which comes in parts).
        limit = max(1, settings.AUDIT_CSV_EXPORT_MAX_ROWS)
        if queryset.values_list("id", flat=True)[limit : limit + 1]:
            self.message_user(
                request,
                f"More than {limit:,} records match these filters, more than one export "
                "holds: narrow them (a date range, an action, a source), or fetch them with "
                "the API's export (GET /api/v1/audit-records/export/), which comes in parts.",
                messages.ERROR,
            )
            changelist_url = reverse("admin:audit_auditrecord_changelist")
            query = request.GET.urlencode()
            return HttpResponseRedirect(f"{changelist_url}?{query}" if query else changelist_url)
        writer = csv.writer(_Echo())

        def rows():
            # A thousand rows a write: the web server sends each item as a chunk of its own.
            batch = [writer.writerow(CSV_COLUMNS)]
            for record in queryset.iterator(chunk_size=2000):
                batch.append(
                    writer.writerow(
                        [
                            spreadsheet_safe(
                                getattr(record, c) if c != "changes" else _dump(record.changes)
                            )
                            for c in CSV_COLUMNS
                        ]
                    )
                )
                if len(batch) >= 1000:
                    yield "".join(batch)
                    batch = []
            if batch:
                yield "".join(batch)

        response = StreamingHttpResponse(rows(), content_type="text/csv")
        response["Content-Disposition"] = 'attachment; filename="audit-log.csv"'
        return response


# A cell starting with one of these is a formula to Excel, LibreOffice and Google Sheets
# (OWASP "CSV injection"); audit text comes partly from outsiders (failed login usernames).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: object) -> object:
    """The value, with a leading quote if a spreadsheet would read it as a formula."""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def _dump(value) -> str:
    return json.dumps(value, sort_keys=True)
