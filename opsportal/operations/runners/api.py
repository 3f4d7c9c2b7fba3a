"""Runners that act on an HTTP endpoint (the API)."""

from __future__ import annotations

from opsportal.operations.runners.outcome import Outcome
from opsportal.systems.adapters import http_endpoint

INCIDENT_P95_MS = 500  # the runbook: "API responses >500ms" is an incident's symptom


def run_api_probe(target, params, operation) -> Outcome:
    endpoint = target.specific()
    result = http_endpoint.probe(
        endpoint, count=params.get("count", 20), interval_ms=params.get("interval_ms", 0)
    )
    p95 = result["p95_ms"]
    if p95 is None:
        verdict = "no request succeeded"
    elif p95 > INCIDENT_P95_MS:
        verdict = f"over {INCIDENT_P95_MS} ms: an incident by the runbook"
    elif p95 >= endpoint.latency_target_ms:
        verdict = f"above the target of {endpoint.latency_target_ms} ms"
    else:
        verdict = f"within the target of {endpoint.latency_target_ms} ms"
    result["verdict"] = verdict
    text = (
        f"{result['requests']} requests to {endpoint.url}: p50 "
        f"{result['p50_ms'] if result['p50_ms'] is not None else '—'} ms, p95 "
        f"{p95 if p95 is not None else '—'} ms ({verdict}), error rate "
        f"{result['error_rate']:.0%}."
    )
    if result["first_errors"]:
        text += " Errors: " + "; ".join(result["first_errors"])
    return Outcome(text, result)
