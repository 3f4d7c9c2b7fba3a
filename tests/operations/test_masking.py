"""Credentials are masked in every operation output the portal shows or stores (by name and
inside values), while evidence files stay byte-exact forensic copies."""

import base64
import hashlib
import json
import time
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.urls import reverse

from incidents.models import IncidentStep
from incidents.services import incident_open
from opsportal.audit.models import AuditRecord
from opsportal.defaults import load_defaults
from opsportal.operations.masking import mask_credentials, mask_env_entry, mask_structure
from opsportal.operations.models import Evidence, Operation, OperationStatus
from opsportal.operations.services import operation_request
from opsportal.operations.tasks import execute_operation
from opsportal.systems.models import HttpEndpoint

BASIC = base64.b64encode(b"svc:canary-basic-pw").decode()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgres://app:pw@db:5432/app", "postgres://app:********@db:5432/app"),
        ("redis://:pw@cache:6379/0", "redis://:********@cache:6379/0"),
        ("postgres://app:p@ss@db/app", "postgres://app:********@db/app"),
        ("https://key123@o1.ingest.example/1", "https://********@o1.ingest.example/1"),
        (f"Authorization: Basic {BASIC}", "Authorization: Basic ********"),
        ("curl -H 'Authorization: Token abc123'", "curl -H 'Authorization: Token ********'"),
        ("sent Bearer eyJhbGciOi.x.y upstream", "sent Bearer ******** upstream"),
        (f"upstream Basic {BASIC}", "upstream Basic ********"),
        ("host=db user=app password=pw", "host=db user=app password=********"),
        ("host=db password='p w' dbname=app", "host=db password=******** dbname=app"),
        ("Server=db;Uid=app;Pwd=pw;", "Server=db;Uid=app;Pwd=********;"),
        ("run --db-password=pw --mode prod", "run --db-password=******** --mode prod"),
        ("GET /v1?api_key=pw&page=2", "GET /v1?api_key=********&page=2"),
        ('{"password": "pw", "user": "app"}', '{"password": "********", "user": "app"}'),
        # Environment-style assignments named as secrets, e.g. in logs or `env` output.
        (
            "export SLACK_WEBHOOK_URL=https://hooks.example/T1/B2/x",
            "export SLACK_WEBHOOK_URL=********",
        ),
        ('"OAUTH_CLIENT=abc", "MODE=prod"', '"OAUTH_CLIENT=********", "MODE=prod"'),
        # Passwords as SQL literals: a query a preview or a long-query listing shows.
        ("ALTER ROLE app WITH PASSWORD 'hunter2'", "ALTER ROLE app WITH PASSWORD ********"),
        (
            "CREATE USER bob ENCRYPTED PASSWORD E'it''s' VALID UNTIL 'infinity'",
            "CREATE USER bob ENCRYPTED PASSWORD ******** VALID UNTIL 'infinity'",
        ),
        ("alter user x password $pw$s3cr'et$pw$;", "alter user x password ********;"),
        ("CREATE USER 'u'@'%' IDENTIFIED BY 'pw'", "CREATE USER 'u'@'%' IDENTIFIED BY ********"),
        ("ALTER ROLE app PASSWORD 'cut off by the 300 charact", "ALTER ROLE app PASSWORD ********"),
        ("ALTER ROLE app PASSWORD NULL", "ALTER ROLE app PASSWORD NULL"),
        # Not credentials: left alone.
        ("Basic information about the service", "Basic information about the service"),
        ("http://api:8080/health?q=1", "http://api:8080/health?q=1"),
        ("mail me at ops@example.com", "mail me at ops@example.com"),
    ],
)
def test_credentials_inside_values_are_masked(text, expected):
    assert mask_credentials(text) == expected


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("DATABASE_URL=postgres://app:pw@db/app", "DATABASE_URL=********"),
        ("SENTRY_DSN=https://k@sentry/1", "SENTRY_DSN=********"),
        ("UPSTREAM_AUTH=anything", "UPSTREAM_AUTH=********"),
        ("DB_PASSWORD=hunter2", "DB_PASSWORD=********"),
        ("CONNINFO=host=db password=pw", "CONNINFO=host=db password=********"),
        ("MODE=prod", "MODE=prod"),
        ("PATH=/usr/bin:/bin", "PATH=/usr/bin:/bin"),
    ],
)
def test_environment_entries_are_masked_by_name_and_value(entry, expected):
    assert mask_env_entry(entry) == expected


def test_results_are_masked_by_key_and_by_shape():
    result = {"first_errors": ["GET http://u:pw@api/ failed"], "api_token": "t0k", "count": 3}
    assert mask_structure(result) == {
        "first_errors": ["GET http://u:********@api/ failed"],
        "api_token": "********",
        "count": 3,
    }


SECRETS = {
    "DATABASE_URL": "postgres://app:canary-db-pw@db:5432/app",
    "REDIS_URL": "redis://:canary-redis-pw@cache:6379/0",
    "SENTRY_DSN": "https://canary-sentry-key@o1.ingest.example/1",
    "UPSTREAM_AUTH": f"Basic {BASIC}",
    "WEBHOOK_HEADER": "Bearer canary-bearer-token",
    "PG_CONNINFO": "host=db user=app password=canary-conninfo-pw dbname=app",
}
CANARIES = [
    "canary-db-pw",
    "canary-redis-pw",
    "canary-sentry-key",
    BASIC,
    "canary-basic-pw",
    "canary-bearer-token",
    "canary-conninfo-pw",
    "canary-log-pw",
]


def staff_in(role: str):
    user = get_user_model().objects.create_user(
        role.lower().replace(" ", "-"), password="role-pass-123", is_staff=True
    )
    user.groups.add(Group.objects.get(name=role))
    return user


@pytest.mark.docker
def test_inspect_and_logs_on_the_incident_show_no_credentials_but_evidence_keeps_them(
    client, run_container, docker_engine, settings, tmp_path
):
    settings.MEDIA_ROOT = tmp_path
    load_defaults()
    container = run_container(
        [
            "sh",
            "-c",
            "echo connecting to postgres://app:canary-log-pw@db/app; echo ready; exec sleep 600",
        ],
        environment={**SECRETS, "MODE": "prod"},
    )
    deadline = time.monotonic() + 15
    while b"ready" not in container.logs() and time.monotonic() < deadline:
        time.sleep(0.1)
    api = HttpEndpoint.objects.create(
        name="api",
        url="http://127.0.0.1:9/health",
        docker_engine=docker_engine,
        container_name=container.name,
    )
    devops = staff_in("DevOps")
    incident = incident_open(
        title="api keeps dying",
        severity="sev3",
        category="container",
        reporter=devops,
        affected_systems=[api],
        runbook_name="Container Issues",
    )
    client.force_login(devops)
    for text in ("OOMKilled errors", "Check container logs"):
        step = IncidentStep.objects.get(incident=incident, text=text)
        response = client.post(
            reverse("admin:incidents_incident_step_run", args=[incident.pk, step.pk]),
            {"target": api.pk, "params": json.dumps(step.operation_params or {}), "reason": ""},
        )
        assert response.status_code == 302, response.content.decode()[:2000]
        step.refresh_from_db()
        execute_operation.apply(args=[step.last_operation_id])
    inspect = Operation.objects.get(incident=incident, kind="container_inspect")
    logs = Operation.objects.get(incident=incident, kind="container_logs")
    assert inspect.status == logs.status == OperationStatus.SUCCEEDED, (inspect.error, logs.error)
    # Masked by name, and inside values whose name says nothing.
    for name in ("DATABASE_URL", "REDIS_URL", "SENTRY_DSN", "UPSTREAM_AUTH"):
        assert f'"{name}=********"' in inspect.output, name
    assert '"WEBHOOK_HEADER=Bearer ********"' in inspect.output
    assert '"PG_CONNINFO=host=db user=app password=******** dbname=app"' in inspect.output
    assert '"MODE=prod"' in inspect.output
    assert "connecting to postgres://app:********@db/app" in logs.output

    stored = [inspect.output, json.dumps(inspect.result), logs.output, json.dumps(logs.result)]
    stored += [e.output + e.message for e in incident.timeline.all()]
    stored += [r.message for r in AuditRecord.objects.all()]
    pages = [
        client.get(reverse("admin:incidents_incident_change", args=[incident.pk])),
        client.get(reverse("admin:operations_operation_change", args=[inspect.pk])),
        client.get(reverse("admin:operations_operation_change", args=[logs.pk])),
    ]
    assert all(page.status_code == 200 for page in pages)
    assert container.name in pages[0].content.decode()  # the output is on the page …
    shown = "\n".join(stored + [page.content.decode() for page in pages])
    for canary in CANARIES:
        assert canary not in shown, canary  # … without a credential in it

    # The forensic copy keeps everything, byte for byte.
    security = staff_in("Security team")
    preserve = operation_request(
        kind="evidence_preserve",
        target=api,
        params={},
        actor=security,
        reason="keep a copy",
        incident=incident,
    )
    execute_operation.apply(args=[preserve.pk])
    preserve.refresh_from_db()
    assert preserve.status == OperationStatus.SUCCEEDED, preserve.error
    item = Evidence.objects.get(operation=preserve, name="inspect.json")
    content = (Path(settings.MEDIA_ROOT) / item.path).read_bytes()
    assert hashlib.sha256(content).hexdigest() == item.sha256 and len(content) == item.size_bytes
    container.reload()
    assert json.loads(content)["Config"]["Env"] == container.attrs["Config"]["Env"]
    for name, value in SECRETS.items():
        assert f"{name}={value}".encode() in content, name
    logs_file = Evidence.objects.get(operation=preserve, name="logs.txt")
    assert (
        b"postgres://app:canary-log-pw@db/app"
        in (Path(settings.MEDIA_ROOT) / logs_file.path).read_bytes()
    )


def test_output_stored_before_masking_is_masked_by_the_migrations(db, redis_target):
    """Rows written unmasked (as before this change) are masked in place by the data
    migrations of operations and incidents; rows without credentials are not rewritten."""
    import importlib

    from django.apps import apps
    from django.utils import timezone

    from incidents.models import Incident, TimelineEvent, TimelineKind

    leaked = "DATABASE_URL=postgres://app:old-canary@db/app\nMODE=prod"
    operation = Operation.objects.create(
        kind="container_logs",
        target=redis_target,
        output=leaked,
        error="GET http://ops:old-canary-2@api/ failed",
        result={"first_errors": ["Authorization: Bearer old-canary-3xyz"], "count": 1},
    )
    clean = Operation.objects.create(kind="container_logs", target=redis_target, output="ok")
    incident = Incident.objects.create(title="old", detected_at=timezone.now())
    event = TimelineEvent.objects.create(
        incident=incident,
        at=timezone.now(),
        kind=TimelineKind.OPERATION,
        message="logs",
        output=leaked,
    )

    importlib.import_module(
        "opsportal.operations.migrations.0003_mask_credentials_in_stored_output"
    ).mask_stored_output(apps, None)
    importlib.import_module(
        "incidents.migrations.0004_mask_credentials_in_timeline_output"
    ).mask_timeline_output(apps, None)

    operation.refresh_from_db()
    event.refresh_from_db()
    assert operation.output == event.output == "DATABASE_URL=********\nMODE=prod"
    assert operation.error == "GET http://ops:********@api/ failed"
    assert operation.result == {"first_errors": ["Authorization: Bearer ********"], "count": 1}
    assert Operation.objects.get(pk=clean.pk).output == "ok"
