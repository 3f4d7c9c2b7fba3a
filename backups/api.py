"""Backups in the REST API: backups and restore drills with their verification results, the
newest verified backup of each database, and "back up now" (backups.run_backup, as the
admin's action). Restores stay in the admin, behind their typed confirmation."""

from __future__ import annotations

import django_filters
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from backups.models import Backup, BackupStatus, BackupTrigger, RestoreDrill, Verification
from backups.selectors import latest_verified_backups
from backups.services import backup_request
from opsportal.api.filters import UtcDateTimeFilter
from opsportal.api.pagination import ApiCursorPagination
from opsportal.api.routing import api_register
from opsportal.api.serializers import StrictSerializer
from opsportal.api.views import ApiReadOnlyViewSet
from opsportal.systems.models import PostgresDatabase

VIEW = "backups.view_backup"


class BackupSerializer(serializers.ModelSerializer):
    database = serializers.CharField(source="database.name", read_only=True)
    requested_by = serializers.CharField(
        source="requested_by.username", read_only=True, allow_null=True
    )

    class Meta:
        model = Backup
        fields = [
            "id",
            "database",
            "status",
            "trigger",
            "reason",
            "requested_by",
            "method",
            "format",
            "file_name",
            "size_bytes",
            "sha256",
            "server_version",
            "requested_at",
            "started_at",
            "finished_at",
            "duration_seconds",
            "message",
            "verification",
            "verified_at",
            "verification_message",
            "drill_result",
            "pruned_at",
        ]


class BackupRequestSerializer(StrictSerializer):
    database = serializers.SlugRelatedField(
        slug_field="name", queryset=PostgresDatabase.objects.all()
    )
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=500)


class DrillSerializer(serializers.ModelSerializer):
    database = serializers.CharField(source="backup.database.name", read_only=True)
    requested_by = serializers.CharField(
        source="requested_by.username", read_only=True, allow_null=True
    )

    class Meta:
        model = RestoreDrill
        fields = [
            "id",
            "backup",
            "database",
            "status",
            "requested_by",
            "requested_at",
            "started_at",
            "finished_at",
            "duration_seconds",
            "tables_compared",
            "mismatches",
            "message",
        ]


class BackupFilter(django_filters.FilterSet):
    database = django_filters.CharFilter(field_name="database__name", max_length=100)
    status = django_filters.MultipleChoiceFilter(choices=BackupStatus.choices)
    verification = django_filters.MultipleChoiceFilter(choices=Verification.choices)
    requested_after = UtcDateTimeFilter(field_name="requested_at", lookup_expr="gte")
    requested_before = UtcDateTimeFilter(field_name="requested_at", lookup_expr="lt")

    class Meta:
        model = Backup
        fields = []


class DrillFilter(django_filters.FilterSet):
    database = django_filters.CharFilter(field_name="backup__database__name", max_length=100)
    backup = django_filters.NumberFilter(field_name="backup_id", min_value=1, max_value=2**53)

    class Meta:
        model = RestoreDrill
        fields = []


class NewestFirst(ApiCursorPagination):
    ordering = ("-requested_at", "-id")


class BackupViewSet(ApiReadOnlyViewSet):
    queryset = Backup.objects.select_related("database", "requested_by")
    serializer_class = BackupSerializer
    pagination_class = NewestFirst
    filterset_class = BackupFilter
    required_permissions = {
        "list": [VIEW],
        "retrieve": [VIEW],
        "latest_verified": [VIEW],
        "create": [VIEW, "backups.run_backup"],
    }

    @extend_schema(request=BackupRequestSerializer, responses={202: BackupSerializer})
    def create(self, request):
        """Back up a database now: queued and run by a worker; poll the backup's status."""
        serializer = BackupRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        backup = backup_request(
            database=serializer.validated_data["database"],
            actor=request.user,
            reason=serializer.validated_data["reason"].strip(),
            trigger=BackupTrigger.MANUAL,
        )
        backup = self.get_queryset().get(pk=backup.pk)
        return Response(BackupSerializer(backup).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses={200: BackupSerializer(many=True)})
    @action(
        detail=False,
        methods=["get"],
        url_path="latest-verified",
        pagination_class=None,
        filterset_class=None,
        filter_backends=[],
    )
    def latest_verified(self, request):
        """The newest verified, not pruned backup of each database that has one."""
        return Response(BackupSerializer(latest_verified_backups(), many=True).data)


class DrillViewSet(ApiReadOnlyViewSet):
    queryset = RestoreDrill.objects.select_related("backup__database", "requested_by")
    serializer_class = DrillSerializer
    pagination_class = NewestFirst
    filterset_class = DrillFilter
    required_permissions = {"*": ["backups.view_restoredrill"]}


def register() -> None:
    api_register("backups", BackupViewSet, basename="backup")
    api_register("restore-drills", DrillViewSet, basename="restoredrill")
