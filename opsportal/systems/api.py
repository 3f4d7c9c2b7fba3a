"""Registered systems in the REST API: name, kind, where it runs and its latest check.

Only the fields every system shares are shown, none of a kind's connection settings: no
secret, and not even whether one is set (the admin shows "set / not set" only to those who
may change the system)."""

from __future__ import annotations

import django_filters
from rest_framework import serializers

from opsportal.api.pagination import ApiCursorPagination
from opsportal.api.routing import api_register
from opsportal.api.views import ApiReadOnlyViewSet
from opsportal.systems.models import System, SystemKind


class SystemSerializer(serializers.ModelSerializer):
    docker_engine = serializers.CharField(
        source="docker_engine.name", read_only=True, allow_null=True
    )

    class Meta:
        model = System
        fields = [
            "id",
            "name",
            "kind",
            "description",
            "critical",
            "docker_engine",
            "container_name",
            "check_interval_seconds",
            "last_checked_at",
            "last_check_ok",
            "last_check_message",
            "last_check_duration_ms",
        ]


class SystemFilter(django_filters.FilterSet):
    kind = django_filters.MultipleChoiceFilter(choices=SystemKind.choices)
    name = django_filters.CharFilter(max_length=100)
    critical = django_filters.BooleanFilter()
    last_check_ok = django_filters.BooleanFilter()

    class Meta:
        model = System
        fields = []


class SystemsByName(ApiCursorPagination):
    ordering = ("name",)


class SystemViewSet(ApiReadOnlyViewSet):
    """Systems the portal operates on, with their latest check state."""

    queryset = System.objects.select_related("docker_engine")
    serializer_class = SystemSerializer
    pagination_class = SystemsByName
    filterset_class = SystemFilter
    required_permissions = {"*": ["systems.view_system"]}


def register() -> None:
    api_register("systems", SystemViewSet, basename="system")
