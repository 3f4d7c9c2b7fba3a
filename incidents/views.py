"""Inbound alerts: Prometheus Alertmanager's webhook (token-protected); the signed link
that acknowledges an incident from a page."""

from __future__ import annotations

import json
import logging

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from incidents.models import Category, Severity
from incidents.services import IncidentRefused, alert_fingerprint, alert_receive
from incidents.services.acknowledge import (
    LinkRefused,
    acknowledge_link_check,
    incident_acknowledge_by_link,
)
from opsportal.bearer import bearer_matches

logger = logging.getLogger(__name__)

# Alertmanager's usual severity label values, mapped to the runbook's levels.
SEVERITY_LABELS = {
    "critical": Severity.SEV1,
    "page": Severity.SEV1,
    "high": Severity.SEV2,
    "error": Severity.SEV2,
    "major": Severity.SEV2,
    "warning": Severity.SEV3,
    "minor": Severity.SEV3,
    "info": Severity.SEV4,
    "low": Severity.SEV4,
    "none": Severity.SEV4,
}
CATEGORY_LABELS = {
    "api": Category.API,
    "http": Category.API,
    "latency": Category.API,
    "database": Category.DATABASE,
    "postgres": Category.DATABASE,
    "db": Category.DATABASE,
    "container": Category.CONTAINER,
    "docker": Category.CONTAINER,
    "security": Category.SECURITY,
}


def map_severity(labels: dict) -> str:
    value = str(labels.get("severity", "")).lower()
    if value in Severity.values:
        return value
    return SEVERITY_LABELS.get(value, Severity.SEV3)


def map_category(labels: dict) -> str:
    for key in ("category", "component", "service_type"):
        value = str(labels.get(key, "")).lower()
        if value in Category.values:
            return value
        if value in CATEGORY_LABELS:
            return CATEGORY_LABELS[value]
    return Category.OTHER


@csrf_exempt
@login_not_required
@require_POST
def alertmanager_webhook(request: HttpRequest) -> JsonResponse:
    if not settings.ALERTMANAGER_WEBHOOK_TOKEN:
        return JsonResponse(
            {"error": "The Alertmanager webhook is off: set ALERTMANAGER_WEBHOOK_TOKEN."},
            status=503,
        )
    # Header only: a ?token= in the URL would be written to every access log on the way.
    if not bearer_matches(request, settings.ALERTMANAGER_WEBHOOK_TOKEN):
        return JsonResponse({"error": "Missing or wrong bearer token."}, status=401)
    try:
        payload = json.loads(request.body)
        alerts = payload["alerts"]
        if not isinstance(alerts, list):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        return JsonResponse(
            {"error": "Expected Alertmanager's webhook JSON (version 4) with an alerts list."},
            status=400,
        )
    results = []
    for alert in alerts:
        labels = {**(payload.get("commonLabels") or {}), **(alert.get("labels") or {})}
        annotations = {
            **(payload.get("commonAnnotations") or {}),
            **(alert.get("annotations") or {}),
        }
        systems = [
            labels[key]
            for key in ("system", "instance_name", "container", "service")
            if labels.get(key)
        ]
        title = annotations.get("summary") or labels.get("alertname") or "Alert"
        evidence = "\n".join(
            filter(
                None,
                [
                    annotations.get("description", ""),
                    f"labels: {json.dumps(labels, sort_keys=True)}",
                    f"generator: {alert.get('generatorURL')}" if alert.get("generatorURL") else "",
                ],
            )
        )
        try:
            received = alert_receive(
                fingerprint=alert.get("fingerprint") or alert_fingerprint(labels),
                status=alert.get("status") or payload.get("status", "firing"),
                title=title,
                severity=map_severity(labels),
                category=map_category(labels),
                systems=systems,
                runbook_name=annotations.get("runbook") or labels.get("runbook"),
                evidence=evidence,
                source="alertmanager",
                auto_resolve=str(labels.get("auto_resolve", "")).lower() in {"1", "true", "yes"},
            )
        except IncidentRefused as exc:
            results.append({"error": exc.message})
            continue
        results.append(
            {
                "alert": received.pk,
                "incident": received.incident_id,
                "suppressed_by": received.suppressed_by_id,
            }
        )
    return JsonResponse({"received": len(alerts), "results": results})


# The signed single-use link is the credential, for this one action only: the page shows
# what it will do and the button (a POST) does it, so a mail scanner that opens links
# acknowledges nothing.
@login_not_required
@require_http_methods(["GET", "POST"])
def acknowledge_link(request: HttpRequest, incident_id: int, token: str) -> HttpResponse:
    context = {"title": "Acknowledge incident", "has_permission": False, "token": token}
    context["incident_url"] = reverse("admin:incidents_incident_change", args=[incident_id])
    try:
        link = acknowledge_link_check(incident_id=incident_id, token=token)
        context.update(incident=link.incident, contact=link.contact)
        if request.method == "POST":
            context["incident"] = incident_acknowledge_by_link(
                incident_id=incident_id, token=token, remote_addr=request.META.get("REMOTE_ADDR")
            )
            context["acknowledged"] = True
    except LinkRefused as refusal:
        context["refused"] = refusal.message
        # 410 Gone for a link that worked once and no longer does; 400 for the rest.
        status = 410 if refusal.gone else 400
        return render(request, "incidents/acknowledge_link.html", context, status=status)
    return render(request, "incidents/acknowledge_link.html", context)
