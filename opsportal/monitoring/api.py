"""Registered systems in the REST API: name, kind, where it runs, its latest check and its
newest collection with the key figures the overview shows.

Only the fields every system shares are shown, none of a kind's connection settings: no
secret, and not even whether one is set (the admin shows "set / not set" only to those who
may change the system)."""

from __future__ import annotations

import django_filters
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from opsportal.api.pagination import ApiCursorPagination
from opsportal.api.routing import api_register
from opsportal.api.views import ApiReadOnlyViewSet
from opsportal.monitoring.selectors import SystemReading, systems_readings
from opsportal.systems.models import System, SystemKind


class KeyFigureSerializer(serializers.Serializer):
    metric = serializers.CharField(help_text="The metric's name in the portal's catalogue.")
    unit = serializers.CharField(help_text='"ms", "%", "B" (bytes), "" for a count.')
    value = serializers.FloatField(allow_null=True, help_text="Null: never collected.")
    at = serializers.DateTimeField(allow_null=True, help_text="When the value was collected.")
    beyond = serializers.CharField(
        help_text='The alert rule\'s line the value crossed ("above 90 %"), "" within target.'
    )
    stale = serializers.BooleanField(
        help_text="The system is down: the value was collected before it went down."
    )


class ReadingSerializer(serializers.Serializer):
    up = serializers.BooleanField(
        allow_null=True, help_text="Whether the last collection succeeded; null: never collected."
    )
    collected_at = serializers.DateTimeField(allow_null=True)
    key_figures = KeyFigureSerializer(many=True, source="figures")


NEVER_COLLECTED = SystemReading(up=None, collected_at=None, figures=[])


class SystemSerializer(serializers.ModelSerializer):
    docker_engine = serializers.CharField(
        source="docker_engine.name", read_only=True, allow_null=True
    )
    collection = serializers.SerializerMethodField()

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
            "collection",
        ]

    @extend_schema_field(ReadingSerializer)
    def get_collection(self, system: System) -> dict:
        reading = self.context.get("readings", {}).get(system.pk, NEVER_COLLECTED)
        return ReadingSerializer(reading).data


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

    def get_serializer(self, *args, **kwargs):
        if args:
            # The page's (or the one system's) readings in two queries, not two per system.
            systems = list(args[0]) if kwargs.get("many") else [args[0]]
            kwargs["context"] = {
                **self.get_serializer_context(),
                "readings": systems_readings(systems=systems),
            }
        return super().get_serializer(*args, **kwargs)


def register() -> None:
    api_register("systems", SystemViewSet, basename="system")
