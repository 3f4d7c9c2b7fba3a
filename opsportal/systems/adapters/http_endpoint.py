"""Adapter for the platform's HTTP endpoints (the API)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import requests

from opsportal.systems.adapters.errors import (
    AdapterError,
    OperationFailed,
    TimedOut,
    Unreachable,
)
from opsportal.systems.adapters.results import PingResult

if TYPE_CHECKING:
    from opsportal.systems.models import HttpEndpoint


@dataclass(frozen=True)
class Response:
    status: int
    latency_ms: float


def request(endpoint: HttpEndpoint, *, session: requests.Session | None = None) -> Response:
    """One request to the endpoint; any status is returned, transport failures raise."""
    headers = {"User-Agent": "OpsPortal-probe"}
    if endpoint.authorization_header:
        headers["Authorization"] = endpoint.authorization_header
    started = time.perf_counter()
    try:
        response = (session or requests).request(
            endpoint.method,
            endpoint.url,
            headers=headers,
            timeout=endpoint.timeout_seconds,
            verify=endpoint.verify_tls,
            allow_redirects=False,
        )
        response.close()
    except requests.exceptions.Timeout as exc:
        raise TimedOut(
            f"{endpoint.name} ({endpoint.url}) did not answer within "
            f"{endpoint.timeout_seconds:g} s."
        ) from exc
    except requests.exceptions.ConnectionError as exc:
        raise Unreachable(
            f"{endpoint.name} ({endpoint.url}) is not reachable: {_reason(exc)}"
        ) from exc
    except requests.exceptions.RequestException as exc:
        raise OperationFailed(f"{endpoint.name} ({endpoint.url}): {_reason(exc)}") from exc
    return Response(status=response.status_code, latency_ms=(time.perf_counter() - started) * 1000)


def _reason(exc: Exception) -> str:
    text = str(exc)
    if "Connection refused" in text:
        return "connection refused"
    if "Name or service not known" in text or "Failed to resolve" in text:
        return "its host name does not resolve"
    return text[:300]


def ping(endpoint: HttpEndpoint) -> PingResult:
    response = request(endpoint)
    if response.status != endpoint.expected_status:
        raise OperationFailed(
            f"{endpoint.name} ({endpoint.url}) answered HTTP {response.status}, "
            f"expected {endpoint.expected_status}."
        )
    return PingResult(
        summary=f"HTTP {response.status} in {response.latency_ms:.0f} ms",
        details={"status": response.status, "latency_ms": round(response.latency_ms, 1)},
    )


__all__ = ["AdapterError", "Response", "ping", "request"]


# --- operations: latency probe (appended for opsportal.operations) --------------------------


def probe(endpoint: HttpEndpoint, *, count: int = 20, interval_ms: int = 0) -> dict:
    """Request the endpoint `count` times over one keep-alive session; report p50/p95
    latency and the error rate (transport failures and unexpected statuses)."""
    import statistics

    latencies: list[float] = []
    errors: list[str] = []
    statuses: dict[str, int] = {}
    with requests.Session() as session:
        for attempt in range(count):
            if attempt and interval_ms:
                time.sleep(interval_ms / 1000)
            try:
                response = request(endpoint, session=session)
            except AdapterError as exc:
                errors.append(exc.message)
                statuses["error"] = statuses.get("error", 0) + 1
                continue
            latencies.append(response.latency_ms)
            statuses[str(response.status)] = statuses.get(str(response.status), 0) + 1
            if response.status != endpoint.expected_status:
                errors.append(f"HTTP {response.status}")

    def percentile(p: float) -> float | None:
        if not latencies:
            return None
        if len(latencies) == 1:
            return round(latencies[0], 1)
        return round(statistics.quantiles(latencies, n=100, method="inclusive")[int(p) - 1], 1)

    return {
        "requests": count,
        "p50_ms": percentile(50),
        "p95_ms": percentile(95),
        "max_ms": round(max(latencies), 1) if latencies else None,
        "error_rate": round(len(errors) / count, 4),
        "statuses": statuses,
        "first_errors": list(dict.fromkeys(errors))[:5],
        "target_p95_ms": endpoint.latency_target_ms,
    }
