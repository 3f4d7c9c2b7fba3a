"""Maintenance windows in the REST API: list, schedule, change and cancel windows through
maintenance.services (which check the same permissions and validate the same way as the
admin), and GET /api/v1/maintenance/now/?system=<name> for deploy pipelines."""

from __future__ import annotations

import django_filters
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response

from maintenance.models import MaintenanceWindow, WindowKind, WindowStatus
from maintenance.selectors import suppressing_window
from maintenance.services import window_cancel, window_schedule, window_update
from opsportal.api.filters import UtcDateTimeFilter
from opsportal.api.pagination import ApiCursorPagination
from opsportal.api.routing import api_register
from opsportal.api.serializers import StrictModelSerializer, StrictSerializer
from opsportal.api.views import ApiGenericViewSet, ApiReadOnlyViewSet
from opsportal.systems.models import System

VIEW = "maintenance.view_maintenancewindow"


class WindowSerializer(StrictModelSerializer):
    systems = serializers.SlugRelatedField(
        many=True, slug_field="name", queryset=System.objects.all(), required=False
    )
    owner = serializers.CharField(source="owner.username", read_only=True, allow_null=True)

    class Meta:
        model = MaintenanceWindow
        fields = [
            "id",
            "title",
            "kind",
            "status",
            "starts_at",
            "ends_at",
            "systems",
            "expected_impact",
            "rollback_plan",
            "owner",
            "emails",
            "announce_lead_hours",
            "plan",
            "started_at",
            "finished_at",
            "created_at",
        ]
        read_only_fields = ["status", "plan", "started_at", "finished_at", "created_at"]
        extra_kwargs = {
            "expected_impact": {"max_length": 20000},
            "rollback_plan": {"max_length": 20000},
            "emails": {"max_length": 5000},
        }


class CancelSerializer(StrictSerializer):
    reason = serializers.CharField(max_length=500)


class NowSerializer(serializers.Serializer):
    system = serializers.CharField()
    in_maintenance = serializers.BooleanField()
    window = serializers.DictField(allow_null=True, help_text="id, title, starts_at, ends_at")


class WindowFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=WindowStatus.choices)
    kind = django_filters.MultipleChoiceFilter(choices=WindowKind.choices)
    system = django_filters.CharFilter(field_name="systems__name", max_length=100, distinct=True)
    starts_after = UtcDateTimeFilter(field_name="starts_at", lookup_expr="gte")
    starts_before = UtcDateTimeFilter(field_name="starts_at", lookup_expr="lt")

    class Meta:
        model = MaintenanceWindow
        fields = []


class WindowsByStart(ApiCursorPagination):
    ordering = ("-starts_at", "-id")


class MaintenanceWindowViewSet(
    mixins.CreateModelMixin, mixins.UpdateModelMixin, ApiReadOnlyViewSet
):
    """Maintenance windows. Starting, completing and the checklist stay in the admin."""

    queryset = MaintenanceWindow.objects.select_related("owner").prefetch_related("systems")
    serializer_class = WindowSerializer
    pagination_class = WindowsByStart
    filterset_class = WindowFilter
    http_method_names = ["get", "post", "patch", "head", "options"]
    required_permissions = {
        "list": [VIEW],
        "retrieve": [VIEW],
        # The services check add/change as well (and say so); asked here first so a role
        # that may not is refused before its input is read.
        "create": [VIEW, "maintenance.add_maintenancewindow"],
        "partial_update": [VIEW, "maintenance.change_maintenancewindow"],
        "cancel": [VIEW, "maintenance.change_maintenancewindow"],
    }

    def perform_create(self, serializer):
        data = dict(serializer.validated_data)
        systems = data.pop("systems", [])
        window = MaintenanceWindow(**data)
        serializer.instance = window_schedule(
            window=window, systems=systems, actor=self.request.user
        )

    def perform_update(self, serializer):
        data = dict(serializer.validated_data)
        systems = data.pop("systems", None)
        window = serializer.instance
        for name, value in data.items():
            setattr(window, name, value)
        serializer.instance = window_update(window=window, systems=systems, actor=self.request.user)

    @extend_schema(request=CancelSerializer, responses={200: WindowSerializer})
    @action(detail=True, methods=["post"], filterset_class=None)
    def cancel(self, request, pk=None):
        window = self.get_object()
        serializer = CancelSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        window = window_cancel(
            window=window, actor=request.user, reason=serializer.validated_data["reason"]
        )
        return Response(WindowSerializer(self.get_queryset().get(pk=window.pk)).data)


class MaintenanceNowViewSet(ApiGenericViewSet):
    """Is a system in a maintenance window right now? For deploy pipelines."""

    queryset = MaintenanceWindow.objects.none()
    pagination_class = None
    filter_backends = []
    extra_query_parameters = ("system",)
    required_permissions = {"now": [VIEW]}

    @extend_schema(
        parameters=[
            OpenApiParameter("system", str, required=True, description="The system's name.")
        ],
        responses={200: NowSerializer},
    )
    @action(detail=False, methods=["get"])
    def now(self, request):
        name = request.query_params.get("system", "").strip()
        if not name:
            raise ValidationError({"system": ["Name the system: ?system=<name>."]})
        system = System.objects.filter(name=name).only("pk", "name").first()
        if system is None:
            raise NotFound(f"There is no system named {name!r}.")
        window = suppressing_window(systems=[system.pk])
        return Response(
            {
                "system": system.name,
                "in_maintenance": window is not None,
                "window": None
                if window is None
                else {
                    "id": window.pk,
                    "title": window.title,
                    "starts_at": window.starts_at,
                    "ends_at": window.ends_at,
                },
            },
            status=status.HTTP_200_OK,
        )


def register() -> None:
    api_register("maintenance/windows", MaintenanceWindowViewSet, basename="maintenancewindow")
    api_register("maintenance", MaintenanceNowViewSet, basename="maintenance")
