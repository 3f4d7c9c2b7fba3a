"""Incidents and alerts in the REST API (issue 12): thin views over incidents.services, with
the permissions the admin's incident page checks (incidents/admin.py), so a rule and its
message live in one place. Registered with the shared router from opsportal/urls.py."""

from __future__ import annotations

import django_filters
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from incidents.models import (
    Alert,
    AlertStatus,
    Category,
    Incident,
    Runbook,
    Severity,
    Status,
    TimelineEvent,
)
from incidents.selectors import incident_timeline
from incidents.services import (
    incident_acknowledge,
    incident_add_note,
    incident_attach_runbook,
    incident_close,
    incident_escalate,
    incident_investigate,
    incident_mitigate,
    incident_open,
    incident_operation_request,
    incident_reopen,
    incident_resolve,
)
from opsportal.api.filters import BoundedSearchFilter, UtcDateTimeFilter
from opsportal.api.pagination import ApiCursorPagination
from opsportal.api.routing import api_register
from opsportal.api.serializers import StrictSerializer
from opsportal.api.views import ApiReadOnlyViewSet
from opsportal.operations.api import OperationSerializer
from opsportal.operations.kinds import KINDS
from opsportal.people.models import Team
from opsportal.systems.models import System

VIEW = "incidents.view_incident"
MANAGE = "incidents.manage_incident"
CHANGE = "incidents.change_incident"
# An incident's page carries its newest events; the whole timeline is paginated on its own.
DETAIL_TIMELINE = 200


# --- serializers ----------------------------------------------------------------------------


class TimelineEventSerializer(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor.username", read_only=True, allow_null=True)

    class Meta:
        model = TimelineEvent
        fields = ["id", "at", "kind", "source", "actor", "message", "output", "operation"]


class IncidentSerializer(serializers.ModelSerializer):
    team = serializers.CharField(source="team.name", read_only=True, allow_null=True)
    commander = serializers.CharField(source="commander.username", read_only=True, allow_null=True)
    reporter = serializers.CharField(source="reporter.username", read_only=True, allow_null=True)
    runbook = serializers.CharField(source="runbook.name", read_only=True, allow_null=True)
    affected_systems = serializers.SlugRelatedField(many=True, read_only=True, slug_field="name")

    class Meta:
        model = Incident
        fields = [
            "id",
            "title",
            "severity",
            "category",
            "status",
            "source",
            "team",
            "commander",
            "reporter",
            "runbook",
            "affected_systems",
            "symptoms",
            "impact",
            "summary",
            "resolution",
            "detected_at",
            "acknowledged_at",
            "mitigated_at",
            "resolved_at",
            "closed_at",
        ]


class IncidentDetailSerializer(IncidentSerializer):
    timeline = serializers.SerializerMethodField(
        help_text=f"The newest {DETAIL_TIMELINE} events, oldest first; "
        "/incidents/{id}/timeline/ pages through all of them."
    )
    timeline_truncated = serializers.SerializerMethodField()

    class Meta(IncidentSerializer.Meta):
        fields = [*IncidentSerializer.Meta.fields, "timeline", "timeline_truncated"]

    def _events(self, incident) -> list[TimelineEvent]:
        if not hasattr(incident, "_api_events"):
            incident._api_events = list(
                incident_timeline(incident=incident).order_by("-at", "-id")[: DETAIL_TIMELINE + 1]
            )
        return incident._api_events

    @extend_schema_field(TimelineEventSerializer(many=True))
    def get_timeline(self, incident):
        return TimelineEventSerializer(
            self._events(incident)[:DETAIL_TIMELINE][::-1], many=True
        ).data

    def get_timeline_truncated(self, incident) -> bool:
        return len(self._events(incident)) > DETAIL_TIMELINE


class IncidentOpenSerializer(StrictSerializer):
    """The admin's short form: title, severity, category, team, symptoms, affected systems."""

    title = serializers.CharField(max_length=200)
    severity = serializers.ChoiceField(choices=Severity.choices)
    category = serializers.ChoiceField(choices=Category.choices)
    team = serializers.SlugRelatedField(
        slug_field="name", queryset=Team.objects.all(), required=False, allow_null=True
    )
    symptoms = serializers.CharField(required=False, allow_blank=True, max_length=20000)
    affected_systems = serializers.SlugRelatedField(
        slug_field="name", queryset=System.objects.all(), many=True, required=False
    )


class NoteSerializer(StrictSerializer):
    text = serializers.CharField(max_length=20000)


class TransitionSerializer(StrictSerializer):
    note = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=5000,
        help_text="Shown on the timeline; for resolve it is the resolution, for reopen the "
        "reason (required).",
    )


class EscalateSerializer(StrictSerializer):
    severity = serializers.ChoiceField(choices=Severity.choices)
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=5000)


class AttachRunbookSerializer(StrictSerializer):
    runbook = serializers.SlugRelatedField(slug_field="name", queryset=Runbook.objects.all())


class OperationRequestSerializer(StrictSerializer):
    kind = serializers.ChoiceField(choices=sorted(KINDS))
    target = serializers.SlugRelatedField(slug_field="name", queryset=System.objects.all())
    params = serializers.DictField(required=False, default=dict)
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=500)
    # A kind that needs two-person approval answers with status "awaiting"; during a SEV1 a
    # break-glass reason runs it at once (the Security team is notified).
    break_glass_reason = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=500
    )


class AlertSerializer(serializers.ModelSerializer):
    systems = serializers.SlugRelatedField(many=True, read_only=True, slug_field="name")

    class Meta:
        model = Alert
        fields = [
            "id",
            "received_at",
            "fingerprint",
            "status",
            "title",
            "severity",
            "category",
            "source",
            "evidence",
            "systems",
            "incident",
            "suppressed_by",
        ]


# --- filters ----------------------------------------------------------------------------------


class IncidentFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=Status.choices)
    severity = django_filters.MultipleChoiceFilter(choices=Severity.choices)
    category = django_filters.MultipleChoiceFilter(choices=Category.choices)
    team = django_filters.CharFilter(field_name="team__name", max_length=100)
    affected_system = django_filters.CharFilter(
        field_name="affected_systems__name", max_length=100, distinct=False
    )
    opened_after = UtcDateTimeFilter(field_name="detected_at", lookup_expr="gte")
    opened_before = UtcDateTimeFilter(field_name="detected_at", lookup_expr="lt")

    class Meta:
        model = Incident
        fields = []


class AlertFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=AlertStatus.choices)
    severity = django_filters.MultipleChoiceFilter(choices=Severity.choices)
    received_after = UtcDateTimeFilter(field_name="received_at", lookup_expr="gte")
    received_before = UtcDateTimeFilter(field_name="received_at", lookup_expr="lt")

    class Meta:
        model = Alert
        fields = []


class NewestIncidentsFirst(ApiCursorPagination):
    # The admin's order, on the (-detected_at, -id) index.
    ordering = ("-detected_at", "-id")


class TimelinePagination(ApiCursorPagination):
    ordering = ("at", "id")


class NewestAlertsFirst(ApiCursorPagination):
    ordering = ("-received_at", "-id")


# --- views ----------------------------------------------------------------------------------

_TRANSITIONS = {
    "acknowledge": lambda incident, actor, note: incident_acknowledge(
        incident=incident, actor=actor, note=note
    ),
    "investigate": lambda incident, actor, note: incident_investigate(
        incident=incident, actor=actor, note=note
    ),
    "mitigate": lambda incident, actor, note: incident_mitigate(
        incident=incident, actor=actor, note=note
    ),
    "resolve": lambda incident, actor, note: incident_resolve(
        incident=incident, actor=actor, resolution=note
    ),
    "close": lambda incident, actor, note: incident_close(
        incident=incident, actor=actor, note=note
    ),
    "reopen": lambda incident, actor, note: incident_reopen(
        incident=incident, actor=actor, reason=note
    ),
}


class IncidentViewSet(mixins.CreateModelMixin, ApiReadOnlyViewSet):
    """Incidents: list (filters and search), open, read one with its timeline, work it."""

    queryset = Incident.objects.select_related("team", "commander", "reporter", "runbook")
    serializer_class = IncidentSerializer
    pagination_class = NewestIncidentsFirst
    filterset_class = IncidentFilter
    filter_backends = [*ApiReadOnlyViewSet.filter_backends, BoundedSearchFilter]
    search_fields = ["title", "symptoms"]  # the admin's search
    required_permissions = {
        "list": [VIEW],
        "retrieve": [VIEW],
        "timeline": [VIEW],
        "create": ["incidents.add_incident"],
        **{name: [VIEW, MANAGE] for name in [*_TRANSITIONS, "escalate"]},
        "notes": [VIEW, CHANGE],
        "runbooks": [VIEW, CHANGE],
        # The kind's own permission is checked in the view (it depends on the body).
        "operations": [VIEW, "incidents.run_incident_steps"],
    }

    def get_queryset(self):
        queryset = super().get_queryset()
        if self.action == "list":
            return queryset.prefetch_related("affected_systems")
        return queryset

    def get_serializer_class(self):
        return {
            "retrieve": IncidentDetailSerializer,
            "create": IncidentOpenSerializer,
            "notes": NoteSerializer,
            "escalate": EscalateSerializer,
            "runbooks": AttachRunbookSerializer,
            "operations": OperationRequestSerializer,
            "timeline": TimelineEventSerializer,
            **dict.fromkeys(_TRANSITIONS, TransitionSerializer),
        }.get(self.action, IncidentSerializer)

    def _input(self, request):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data

    def _incident_answer(self, incident, code=status.HTTP_200_OK):
        incident = self.get_queryset().prefetch_related("affected_systems").get(pk=incident.pk)
        return Response(IncidentSerializer(incident).data, status=code)

    @extend_schema(request=IncidentOpenSerializer, responses={201: IncidentSerializer})
    def create(self, request, *args, **kwargs):
        data = self._input(request)
        incident = incident_open(
            title=data["title"],
            severity=data["severity"],
            category=data["category"],
            team=data.get("team"),
            reporter=request.user,
            symptoms=data.get("symptoms", ""),
            affected_systems=data.get("affected_systems", []),
        )
        return self._incident_answer(incident, status.HTTP_201_CREATED)

    @extend_schema(responses={200: TimelineEventSerializer(many=True)})
    @action(detail=True, methods=["get"], pagination_class=TimelinePagination, filterset_class=None)
    def timeline(self, request, pk=None):
        incident = self.get_object()
        page = self.paginate_queryset(incident_timeline(incident=incident))
        return self.get_paginated_response(TimelineEventSerializer(page, many=True).data)

    def _transition(self, request, name):
        incident = self.get_object()
        data = self._input(request)
        _TRANSITIONS[name](incident, request.user, data["note"].strip())
        return self._incident_answer(incident)

    @extend_schema(request=TransitionSerializer, responses={200: IncidentSerializer})
    @action(detail=True, methods=["post"], filterset_class=None)
    def acknowledge(self, request, pk=None):
        return self._transition(request, "acknowledge")

    @extend_schema(request=TransitionSerializer, responses={200: IncidentSerializer})
    @action(detail=True, methods=["post"], filterset_class=None)
    def investigate(self, request, pk=None):
        return self._transition(request, "investigate")

    @extend_schema(request=TransitionSerializer, responses={200: IncidentSerializer})
    @action(detail=True, methods=["post"], filterset_class=None)
    def mitigate(self, request, pk=None):
        return self._transition(request, "mitigate")

    @extend_schema(request=TransitionSerializer, responses={200: IncidentSerializer})
    @action(detail=True, methods=["post"], filterset_class=None)
    def resolve(self, request, pk=None):
        return self._transition(request, "resolve")

    @extend_schema(request=TransitionSerializer, responses={200: IncidentSerializer})
    @action(detail=True, methods=["post"], filterset_class=None)
    def close(self, request, pk=None):
        return self._transition(request, "close")

    @extend_schema(request=TransitionSerializer, responses={200: IncidentSerializer})
    @action(detail=True, methods=["post"], filterset_class=None)
    def reopen(self, request, pk=None):
        return self._transition(request, "reopen")

    @extend_schema(request=EscalateSerializer, responses={200: IncidentSerializer})
    @action(detail=True, methods=["post"], filterset_class=None)
    def escalate(self, request, pk=None):
        incident = self.get_object()
        data = self._input(request)
        incident_escalate(
            incident=incident,
            severity=data["severity"],
            actor=request.user,
            reason=data["reason"].strip(),
        )
        return self._incident_answer(incident)

    @extend_schema(request=NoteSerializer, responses={201: TimelineEventSerializer})
    @action(detail=True, methods=["post"], filterset_class=None)
    def notes(self, request, pk=None):
        incident = self.get_object()
        data = self._input(request)
        event = incident_add_note(incident=incident, actor=request.user, text=data["text"])
        return Response(TimelineEventSerializer(event).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=AttachRunbookSerializer, responses={200: IncidentSerializer})
    @action(detail=True, methods=["post"], filterset_class=None)
    def runbooks(self, request, pk=None):
        incident = self.get_object()
        data = self._input(request)
        incident_attach_runbook(incident=incident, runbook=data["runbook"], actor=request.user)
        return self._incident_answer(incident)

    @extend_schema(request=OperationRequestSerializer, responses={201: OperationSerializer})
    @action(detail=True, methods=["post"], filterset_class=None)
    def operations(self, request, pk=None):
        """Request an operation for the incident, as a runbook step's run page does: the
        same permissions (run incident steps and the kind's own), and a changing kind needs
        a reason. The operation acts only on the incident's systems (the service checks)."""
        incident = self.get_object()
        data = self._input(request)
        operation = incident_operation_request(
            incident=incident,
            kind=data["kind"],
            target=data["target"],
            params=data["params"],
            actor=request.user,
            reason=data["reason"],
            break_glass_reason=data["break_glass_reason"],
        )
        return Response(OperationSerializer(operation).data, status=status.HTTP_201_CREATED)


class AlertViewSet(ApiReadOnlyViewSet):
    """Alerts received (from Alertmanager and the portal's own rules): list and read."""

    queryset = Alert.objects.prefetch_related("systems")
    serializer_class = AlertSerializer
    pagination_class = NewestAlertsFirst
    filterset_class = AlertFilter
    required_permissions = {"*": ["incidents.view_alert"]}


def register() -> None:
    api_register("incidents", IncidentViewSet, basename="incident")
    api_register("alerts", AlertViewSet, basename="alert")
