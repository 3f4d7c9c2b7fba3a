"""Operations in the REST API: read an operation's status and output (requesting one is done
on an incident, incidents/api.py, with the same permissions as a runbook step's run page)."""

from __future__ import annotations

import django_filters
from rest_framework import serializers

from opsportal.api.pagination import ApiCursorPagination
from opsportal.api.routing import api_register
from opsportal.api.views import ApiReadOnlyViewSet
from opsportal.operations.kinds import KINDS
from opsportal.operations.models import Operation, OperationStatus


class OperationSerializer(serializers.ModelSerializer):
    target = serializers.CharField(source="target.name", read_only=True, allow_null=True)
    requested_by = serializers.CharField(
        source="requested_by.username", read_only=True, allow_null=True
    )
    duration_seconds = serializers.FloatField(read_only=True, allow_null=True)

    class Meta:
        model = Operation
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
            "error",
            "requested_at",
            "started_at",
            "finished_at",
            "duration_seconds",
        ]


class OperationFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=OperationStatus.choices)
    kind = django_filters.MultipleChoiceFilter(choices=[(k, k) for k in sorted(KINDS)])
    target = django_filters.CharFilter(field_name="target__name", max_length=100)
    incident = django_filters.NumberFilter(field_name="incident_id", min_value=1, max_value=2**53)

    class Meta:
        model = Operation
        fields = []


class NewestOperationsFirst(ApiCursorPagination):
    ordering = ("-requested_at", "-id")


class OperationViewSet(ApiReadOnlyViewSet):
    """Operations on systems: their status, output and result."""

    queryset = Operation.objects.select_related("target", "requested_by")
    serializer_class = OperationSerializer
    pagination_class = NewestOperationsFirst
    filterset_class = OperationFilter
    required_permissions = {"*": ["operations.view_operation"]}


def register() -> None:
    api_register("operations", OperationViewSet, basename="operation")
