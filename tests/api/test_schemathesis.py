"""The whole OpenAPI schema, property-based, against a live server: Schemathesis generates
requests for every operation (valid and invalid input, from the schema) and sends them to
the portal under gunicorn on loopback, once with a superuser's read-write token and once
with a Viewer's. Every response must be no server error, carry a documented status, content
type and headers, and match the documented body; an operation that ignores authentication
fails too.

Bounded: a fixed max-examples per operation and a time budget per run (under a minute
each), so the module takes two to three minutes on two cores. Negative/positive data
acceptance (ST201/ST202) is left out: empty filter values are "no filter" by design, and
a few documented ranges (ids from 1) are not in the schema."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from django.contrib.auth.models import Group

from incidents.services import incident_open
from opsportal.api.services import api_token_create
from opsportal.defaults import load_defaults
from opsportal.systems.models import HttpEndpoint
from tests import realsystems
from tests.api.conftest import make_user
from tests.api.test_roles import API_ROLES

MAX_EXAMPLES = 10
SECONDS_PER_RUN = 50
# Every method x path of the schema (test_roles checks that its table lists exactly those).
OPERATIONS = len(API_ROLES)
CHECKS_LEFT_OUT = "negative_data_rejection,positive_data_acceptance"


def _schemathesis(
    base_url: str, token: str, seed: int, report: Path
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            str(Path(sys.executable).parent / "schemathesis"),
            "run",
            f"{base_url}/api/schema/",
            "--header",
            f"Authorization: Bearer {token}",
            "--max-examples",
            str(MAX_EXAMPLES),
            "--max-time",
            str(SECONDS_PER_RUN),
            "--checks",
            "all",
            "--exclude-checks",
            CHECKS_LEFT_OUT,
            "--phases",
            "examples,coverage,fuzzing,stateful",
            # One worker: with several, Hypothesis' lambda descriptions (ast.parse in threads)
            # can crash on CPython 3.11 ("AST constructor recursion depth mismatch").
            "--workers",
            "1",
            "--seed",
            str(seed),
            "--no-color",
            "--output-truncate",
            "false",
            "--report",
            "junit",
            "--report-junit-path",
            str(report),
        ],
        cwd=tempfile.gettempdir(),
        capture_output=True,
        text=True,
        timeout=SECONDS_PER_RUN * 3,
        check=False,
    )


def test_the_schema_holds_against_a_live_server(live_server_url, tmp_path):
    base_url, server_log = live_server_url
    load_defaults()
    root = make_user("superuser", username="st-root")
    viewer = make_user("Viewers", username="st-viewer")
    assert viewer.groups.filter(name="Viewers").exists() and Group.objects.count() >= 5
    # Something to find: a system and an incident (ids 1 are what the generator tries first).
    HttpEndpoint.objects.create(name="st-web", url=f"http://127.0.0.1:{realsystems.free_port()}/")
    incident_open(title="Schemathesis", severity="sev3", category="other", reporter=root)
    runs = {
        "superuser": api_token_create(user=root, name="schemathesis", scope="read_write")[1],
        "Viewers": api_token_create(user=viewer, name="schemathesis", scope="read_write")[1],
    }
    failures = []
    for seed, (role, token) in enumerate(runs.items(), start=1):
        report = tmp_path / f"{role}.xml"
        result = _schemathesis(base_url, token, seed, report)
        # The JUnit report proves the run tested every operation (one test case each).
        text = report.read_text() if report.exists() else ""
        if result.returncode != 0 or text.count("<testcase") < OPERATIONS:
            failures.append(f"--- as {role} (exit {result.returncode}):\n{result.stdout[-15000:]}")
    errors = [
        line for line in server_log.read_text().splitlines() if "Internal Server Error" in line
    ]
    assert not failures and not errors, "\n".join(failures + errors)
