"""/metrics: Prometheus text format that promtool accepts, under one or several workers."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from opsportal.systems.services import system_test_connection
from tests import realsystems
from tests.conftest import PROJECT_ROOT, _test_database_url

pytestmark = pytest.mark.django_db


def families(text: str) -> dict:
    return {family.name: family for family in text_string_to_metric_families(text)}


def test_metrics_parse_and_carry_the_portal_gauges(client, http_endpoint, http_server):
    system_test_connection(system=http_endpoint)
    client.get("/health")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    parsed = families(response.content.decode())
    up = {s.labels["system"]: s.value for s in parsed["opsportal_system_up"].samples}
    assert up == {"test-api": 1.0}
    assert "django_http_requests_latency_seconds_by_view_method" in parsed
    http_server.behaviour.status = 503
    system_test_connection(system=http_endpoint)
    parsed = families(client.get("/metrics").content.decode())
    assert [s.value for s in parsed["opsportal_system_up"].samples] == [0.0]


def test_metrics_pass_promtool(client, http_endpoint):
    system_test_connection(system=http_endpoint)
    text = client.get("/metrics").content
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, check=False
    )
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


def test_metrics_token(client, settings):
    settings.METRICS_TOKEN = "scrape-token"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer nope").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-token").status_code == 200


def test_metrics_need_no_login_when_no_token_is_set(client, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_metrics_add_up_across_several_gunicorn_workers():
    """With PROMETHEUS_MULTIPROC_DIR, any worker reports the requests all workers served."""
    from django.db import connection

    port = realsystems.free_port()
    multiproc_dir = tempfile.mkdtemp(prefix="opsportal-prom-")
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": multiproc_dir,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WEB_CONCURRENCY": "3",
        "WEB_ACCESS_LOG": "0",
        "DATABASE_URL": _test_database_url(connection.settings_dict),
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "opsportal.wsgi", "-c", "deploy/gunicorn.conf.py"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        realsystems.wait_for_port(port, timeout=30)
        session = requests.Session()
        for _ in range(60):
            # A new connection each time spreads the requests over the workers.
            # Generous: the arbiter binds the port before its workers finish importing Django.
            assert requests.get(f"http://127.0.0.1:{port}/health", timeout=30).ok
        text = session.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(20)
        shutil.rmtree(multiproc_dir, ignore_errors=True)
    parsed = families(text)
    served = sum(
        s.value
        for s in parsed["django_http_responses_total_by_status_view_method"].samples
        if s.labels.get("view") == "health" and s.name.endswith("_total")
    )
    assert served == 60


def test_metrics_carry_database_and_cache_figures(client, settings):
    """django-prometheus's DB and cache metrics: the portal's backends are its instrumented ones."""
    settings.HEALTH_TOKEN = "t"
    # The detailed health check queries the portal database and writes/reads the cache.
    assert client.get("/health/detailed", HTTP_AUTHORIZATION="Bearer t").status_code in (200, 503)
    parsed = families(client.get("/metrics").content.decode())
    executed = [
        s
        for s in parsed["django_db_execute"].samples
        if s.name == "django_db_execute_total" and s.labels["vendor"] == "postgresql"
    ]
    assert executed and sum(s.value for s in executed) > 0
    gets = [s for s in parsed["django_cache_get"].samples if s.name == "django_cache_get_total"]
    assert gets and sum(s.value for s in gets) > 0
