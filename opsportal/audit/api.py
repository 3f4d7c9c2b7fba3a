"""The audit history in the REST API: filtered like the admin's list, cursor-paginated, and
an NDJSON export streamed row by row for large ranges (constant memory however many), in
parts that each end before the web worker's timeout."""

from __future__ import annotations

import django_filters
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.renderers import JSONRenderer

from opsportal.api.filters import BoundedSearchFilter, UtcDateTimeFilter
from opsportal.api.pagination import ApiCursorPagination
from opsportal.api.routing import api_register
from opsportal.api.views import ApiReadOnlyViewSet, NdjsonRenderer
from opsportal.audit.models import AuditAction, AuditOutcome, AuditRecord, AuditSource

EXPORT_FIELDS = [
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


class AuditRecordSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditRecord
        fields = [*EXPORT_FIELDS[:1], "actor", *EXPORT_FIELDS[1:], "prev_hash"]


class AuditRecordFilter(django_filters.FilterSet):
    """The admin list's filters: action, source, outcome, object type, time, actor."""

    action = django_filters.MultipleChoiceFilter(choices=AuditAction.choices)
    source = django_filters.MultipleChoiceFilter(choices=AuditSource.choices)
    outcome = django_filters.MultipleChoiceFilter(choices=AuditOutcome.choices)
    object_type = django_filters.CharFilter(max_length=100)
    object_id = django_filters.CharFilter(max_length=64)
    actor = django_filters.NumberFilter(field_name="actor_id", min_value=1, max_value=2**53)
    actor_name = django_filters.CharFilter(max_length=150)
    after_id = django_filters.NumberFilter(
        field_name="id",
        lookup_expr="gt",
        min_value=0,
        max_value=2**53,
        help_text="Records after this id (the export's next part).",
    )
    at_after = UtcDateTimeFilter(field_name="at", lookup_expr="gte")
    at_before = UtcDateTimeFilter(field_name="at", lookup_expr="lt")

    class Meta:
        model = AuditRecord
        fields = []


class NewestRecordsFirst(ApiCursorPagination):
    ordering = "-id"


class AuditRecordViewSet(ApiReadOnlyViewSet):
    """Audit records, newest first."""

    queryset = AuditRecord.objects.all()
    serializer_class = AuditRecordSerializer
    pagination_class = NewestRecordsFirst
    filterset_class = AuditRecordFilter
    filter_backends = [*ApiReadOnlyViewSet.filter_backends, BoundedSearchFilter]
    # The admin list's search.
    search_fields = ["object_repr", "object_id", "message", "actor_name"]
    required_permissions = {"*": ["audit.view_auditrecord"]}

    @extend_schema(
        filters=True,  # the list's filters and search (not detected on a non-list action)
        responses={
            (200, "application/x-ndjson"): OpenApiResponse(
                response=OpenApiTypes.STR,
                description="One JSON object per line, oldest first, for the filtered range: "
                "at most API_AUDIT_EXPORT_PART_ROWS records a response; a longer range goes "
                'on in the part the Link header names (rel="next").',
            )
        },
        parameters=[
            OpenApiParameter(
                "Link",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                response=[200],
                description='`<url>; rel="next"`: the next part of the range; absent on the '
                "last part.",
            )
        ],
    )
    @action(
        detail=False,
        methods=["get"],
        pagination_class=None,
        renderer_classes=[JSONRenderer, NdjsonRenderer],
    )
    def export(self, request):
        queryset = self.filter_queryset(self.get_queryset()).order_by("id")
        queryset, last = self._export_part(request, queryset)
        next_part = ""
        if last is not None:
            query = request.query_params.copy()
            query["after_id"] = str(last)
            next_part = f"{request.build_absolute_uri(request.path)}?{query.urlencode()}"
        rows = queryset.values(*EXPORT_FIELDS)

        encoder = DjangoJSONEncoder(ensure_ascii=False)  # one for every line

        def lines():
            # A thousand lines a write: the web server sends each item it is given as a
            # chunk of its own (a syscall and a chunk header per record otherwise).
            batch: list[str] = []
            for row in rows.iterator(chunk_size=2000):
                batch.append(encoder.encode(row))
                if len(batch) == 1000:
                    yield "\n".join(batch) + "\n"
                    batch = []
            if batch:
                yield "\n".join(batch) + "\n"

        response = StreamingHttpResponse(lines(), content_type="application/x-ndjson")
        response["Content-Disposition"] = 'attachment; filename="audit-records.ndjson"'
        if next_part:
            response["Link"] = f'<{next_part}>; rel="next"'
        return response

    def _export_part(self, request, queryset):
        """This response's part of the filtered range, and the id the next part starts after
        (None on the last part). A part ends well before gunicorn's worker timeout could cut
        it: at most API_AUDIT_EXPORT_PART_ROWS records, and among at most
        API_AUDIT_EXPORT_PART_IDS consecutive ids, so a filter few records match (a search)
        does not scan the whole table in one response; such a part may hold no record.
        Records written meanwhile come after the part's last id: none is missed or repeated."""
        part_rows = max(1, settings.API_AUDIT_EXPORT_PART_ROWS)
        part_ids = max(part_rows, settings.API_AUDIT_EXPORT_PART_IDS)
        asked = AuditRecordFilter(request.query_params, queryset=AuditRecord.objects.none())
        after = int(asked.form.cleaned_data.get("after_id") or 0) if asked.is_valid() else 0
        everything = AuditRecord.objects.order_by("id").values_list("id", flat=True)
        first = everything.filter(id__gt=after).first()
        if first is None:
            return queryset.none(), None
        window_end = first + part_ids - 1
        queryset = queryset.filter(id__lte=window_end)
        # The part's last id and whether a record follows it, by offset on the primary key.
        edge = list(queryset.values_list("id", flat=True)[part_rows - 1 : part_rows + 1])
        if len(edge) == 2:
            return queryset.filter(id__lte=edge[0]), edge[0]
        if everything.filter(id__gt=window_end).exists():
            return queryset, window_end
        return queryset, None


def register() -> None:
    api_register("audit-records", AuditRecordViewSet, basename="auditrecord")
