"""The README's API examples, run as written: the shell block under "**Examples**" is read
from README.md, and each command in it runs in bash with curl against the portal under
gunicorn, with `$OPS` and `$OPS_TOKEN` set as a deploy pipeline sets them. A README example
that stops working (a path, a field, a status) fails here.

The only change made to the text is the one a reader makes: the note goes to the incident
the previous command opened, not to the example's id 481."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess

from django.utils import timezone

from incidents.models import Incident, TimelineEvent
from maintenance.models import MaintenanceWindow, WindowKind
from maintenance.services import window_finish, window_schedule, window_start
from opsportal.api.services import api_token_create
from opsportal.audit.models import AuditRecord
from opsportal.defaults import load_defaults
from opsportal.systems.models import HttpEndpoint, PostgresDatabase
from tests.api.conftest import make_user
from tests.conftest import PROJECT_ROOT

EXAMPLE_INCIDENT_ID = "481"


def readme_commands() -> list[str]:
    """The commands of the README's API example block, comments and sample output left out
    (a command's continuation lines, quoted or after a backslash, stay with it)."""
    readme = (PROJECT_ROOT / "README.md").read_text()
    block = re.search(r"\*\*Examples\*\*.*?```sh\n(.*?)```", readme, re.S)[1]
    commands: list[str] = []
    for line in block.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        if line.startswith("curl"):
            commands.append(line)
        else:
            commands[-1] += "\n" + line
    return commands


def run(command: str, base_url: str, token: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        env={"PATH": "/usr/bin:/bin", "OPS": base_url, "OPS_TOKEN": token},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_a_pipeline_checks_maintenance_opens_an_incident_and_adds_a_note_as_the_readme_shows(
    live_server_url,
):
    base_url, _ = live_server_url
    load_defaults()
    pipeline = make_user("On-call engineers", username="deploy-pipeline")
    devops = make_user("DevOps", username="readme-devops")
    PostgresDatabase.objects.create(
        name="checkout-db", host="127.0.0.1", port=5432, dbname="checkout"
    )
    HttpEndpoint.objects.create(name="checkout-api", url="http://127.0.0.1:9/health")
    _, token = api_token_create(user=pipeline, name="deploy pipeline", scope="read_write")
    window = window_schedule(
        window=MaintenanceWindow(
            title="PostgreSQL 17 upgrade",
            kind=WindowKind.AD_HOC,
            starts_at=timezone.now(),
            ends_at=timezone.now() + dt.timedelta(hours=1),
        ),
        systems=[PostgresDatabase.objects.get(name="checkout-db")],
        actor=devops,
    )
    window_start(window=window, actor=devops, override_reason="the README's example")

    ask, gate, open_incident, add_note = readme_commands()

    # May I deploy? The answer names the window in progress ...
    answer = run(ask, base_url, token)
    assert answer.returncode == 0, answer.stderr
    body = json.loads(answer.stdout)
    assert body["system"] == "checkout-db" and body["in_maintenance"] is True
    assert body["window"]["id"] == window.pk
    assert body["window"]["title"] == "PostgreSQL 17 upgrade"
    # ... and the shell step stops while it lasts, and goes on once it is over.
    stopped = run(gate, base_url, token)
    # Exit 1 from the gate's own test, not from curl or a traceback (pipefail is on).
    assert stopped.returncode == 1 and stopped.stderr == "" and stopped.stdout == ""
    window_finish(window=window, actor=devops)
    passed = run(gate, base_url, token)
    assert passed.returncode == 0, passed.stderr

    opened = run(open_incident, base_url, token)
    assert opened.returncode == 0, opened.stderr
    incident = json.loads(opened.stdout)
    assert incident["status"] == "open" and incident["severity"] == "sev3"
    row = Incident.objects.get(pk=incident["id"])
    assert row.title == "Deploy 4312 failed health checks" and row.reporter == pipeline
    assert list(row.affected_systems.values_list("name", flat=True)) == ["checkout-api"]

    assert f"/incidents/{EXAMPLE_INCIDENT_ID}/notes/" in add_note
    noted = run(
        add_note.replace(f"/{EXAMPLE_INCIDENT_ID}/", f"/{incident['id']}/"), base_url, token
    )
    assert noted.returncode == 0, noted.stderr
    note = TimelineEvent.objects.get(
        incident=row, message="Rolled back to 4311; error rate back to normal."
    )
    assert note.actor == pipeline
    records = AuditRecord.objects.filter(
        object_type="incidents.incident", object_id=str(row.pk), actor=pipeline
    )
    assert records.filter(message__startswith="Opened").exists()
    assert records.count() >= 2 and set(records.values_list("source", flat=True)) == {"api"}


def test_the_readmes_loop_exports_every_part_of_the_audit_history(live_server_url, tmp_path):
    """The loop under "Following an export's parts", as written, against gunicorn serving
    parts of 3 records: every record since the date, once each, oldest first."""
    base_url, _ = live_server_url
    load_defaults()
    auditor = make_user("Viewers", username="readme-auditor")
    _, token = api_token_create(user=auditor, name="audit archive", scope="read")
    readme = (PROJECT_ROOT / "README.md").read_text()
    loop = re.search(r"Following an export's parts.*?```sh\n(.*?)```", readme, re.S)[1]
    since = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    assert "at_after=2026-11-01T00:00:00Z" in loop
    expected = list(
        AuditRecord.objects.filter(at__gte=since).order_by("id").values_list("id", flat=True)
    )
    assert len(expected) > 6  # load_defaults' records and the token's: three parts or more

    done = run(loop, base_url, token, cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    lines = (tmp_path / "audit.ndjson").read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == expected

    # A part refused (here: a token that does not authenticate) stops the loop with an
    # error naming the part, instead of ending quietly with half the archive.
    (tmp_path / "audit.ndjson").unlink()
    refused = run(loop, base_url, token[:-2] + "xx", cwd=tmp_path)
    assert refused.returncode == 1
    assert "export stopped at http" in refused.stderr and "401" in refused.stderr
    assert (tmp_path / "audit.ndjson").read_text() == ""
