"""Who may call every API endpoint: each seeded role group (load_defaults), a superuser and
anonymous callers, with the expected status declared once in API_ROLES below (the API's own
role matrix, like tests/test_role_matrix.py for the admin). An endpoint in the OpenAPI schema
with no row fails `test_every_endpoint_in_the_schema_has_a_row`.

Every caller holds a read-write token, so what is tested is the owner's role: a token never
does more than its owner may. Each request runs in a savepoint rolled back afterwards, so a
change one role may make changes nothing another role's request sees."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import psycopg
import pytest
from django.db import transaction
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator

from opsportal.api.services import api_token_create
from opsportal.defaults import load_defaults
from tests import realsystems
from tests.api.conftest import ApiClient, make_user

ANONYMOUS = "anonymous"
VIEWERS = "Viewers"
ON_CALL = "On-call engineers"
DBA = "Database admins"
DEVOPS = "DevOps"
SECURITY = "Security team"
SUPERUSER = "superuser"
GROUPS = (VIEWERS, ON_CALL, DBA, DEVOPS, SECURITY)
ROLES = (ANONYMOUS, *GROUPS, SUPERUSER)
STAFF = frozenset((*GROUPS, SUPERUSER))
# Every role but Viewers works incidents (manage_incident, change_incident, run steps).
RESPONDERS = frozenset((ON_CALL, DBA, DEVOPS, SECURITY, SUPERUSER))

pytestmark = pytest.mark.django_db


@dataclass(frozen=True)
class Row:
    """One endpoint: who may call it and what an allowed call answers. `obj` names the
    world's object that fills {id}; `body` is sent as JSON ("<name>" is a world value)."""

    allowed: frozenset[str]
    ok: int = 200
    obj: str | None = None
    query: dict | None = None
    body: dict | None = None


# (method, path as in the schema) -> Row
API_ROLES: dict[tuple[str, str], Row] = {
    # --- incidents: everyone reads and opens; responders work them ----------------------
    ("GET", "/api/v1/incidents/"): Row(STAFF, query={"status": "open", "search": "API"}),
    ("POST", "/api/v1/incidents/"): Row(
        STAFF, ok=201, body={"title": "API matrix", "severity": "sev4", "category": "other"}
    ),
    ("GET", "/api/v1/incidents/{id}/"): Row(STAFF, obj="incident"),
    ("GET", "/api/v1/incidents/{id}/timeline/"): Row(STAFF, obj="incident"),
    ("POST", "/api/v1/incidents/{id}/acknowledge/"): Row(RESPONDERS, obj="incident"),
    ("POST", "/api/v1/incidents/{id}/investigate/"): Row(RESPONDERS, obj="incident"),
    # An open incident cannot be mitigated, closed or reopened: the allowed roles get the
    # service's refusal (409), the others the permission refusal (403).
    ("POST", "/api/v1/incidents/{id}/mitigate/"): Row(RESPONDERS, ok=409, obj="incident"),
    ("POST", "/api/v1/incidents/{id}/resolve/"): Row(
        RESPONDERS, obj="incident", body={"note": "fixed"}
    ),
    ("POST", "/api/v1/incidents/{id}/close/"): Row(RESPONDERS, ok=409, obj="incident"),
    ("POST", "/api/v1/incidents/{id}/reopen/"): Row(
        RESPONDERS, ok=409, obj="incident", body={"note": "again"}
    ),
    ("POST", "/api/v1/incidents/{id}/escalate/"): Row(
        RESPONDERS, obj="incident", body={"severity": "sev1", "reason": "spreading"}
    ),
    ("POST", "/api/v1/incidents/{id}/notes/"): Row(
        RESPONDERS, ok=201, obj="incident", body={"text": "Looked at the logs."}
    ),
    ("POST", "/api/v1/incidents/{id}/runbooks/"): Row(
        RESPONDERS, obj="incident", body={"runbook": "Container Issues"}
    ),
    # A read-only operation every responder role may run, on the incident's engine.
    ("POST", "/api/v1/incidents/{id}/operations/"): Row(
        RESPONDERS,
        ok=201,
        obj="incident",
        body={"kind": "container_list", "target": "<engine>", "params": {}},
    ),
    ("GET", "/api/v1/alerts/"): Row(STAFF),
    ("GET", "/api/v1/alerts/{id}/"): Row(STAFF, obj="alert"),
    # --- systems, operations -------------------------------------------------------------
    ("GET", "/api/v1/systems/"): Row(STAFF),
    ("GET", "/api/v1/systems/{id}/"): Row(STAFF, obj="database"),
    ("GET", "/api/v1/operations/"): Row(STAFF),
    ("GET", "/api/v1/operations/{id}/"): Row(STAFF, obj="operation"),
    # --- backups: everyone reads; database admins back up --------------------------------
    ("GET", "/api/v1/backups/"): Row(STAFF),
    ("POST", "/api/v1/backups/"): Row(
        frozenset((DBA, SUPERUSER)), ok=202, body={"database": "<database>", "reason": "API"}
    ),
    ("GET", "/api/v1/backups/{id}/"): Row(STAFF, obj="backup"),
    ("GET", "/api/v1/backups/latest-verified/"): Row(STAFF),
    ("GET", "/api/v1/restore-drills/"): Row(STAFF),
    ("GET", "/api/v1/restore-drills/{id}/"): Row(STAFF, obj="drill"),
    # --- maintenance: everyone reads and asks "now?"; DevOps schedules and changes -------
    ("GET", "/api/v1/maintenance/now/"): Row(STAFF, query={"system": "<database>"}),
    ("GET", "/api/v1/maintenance/windows/"): Row(STAFF),
    ("POST", "/api/v1/maintenance/windows/"): Row(
        frozenset((DEVOPS, SUPERUSER)),
        ok=201,
        body={
            "title": "API window",
            "kind": "ad_hoc",
            "starts_at": "<in_3h>",
            "ends_at": "<in_4h>",
            "systems": ["<database>"],
        },
    ),
    ("GET", "/api/v1/maintenance/windows/{id}/"): Row(STAFF, obj="window"),
    ("PATCH", "/api/v1/maintenance/windows/{id}/"): Row(
        frozenset((DEVOPS, SUPERUSER)), obj="window", body={"title": "Renamed by the API"}
    ),
    ("POST", "/api/v1/maintenance/windows/{id}/cancel/"): Row(
        frozenset((DEVOPS, SUPERUSER)), obj="window", body={"reason": "Not needed"}
    ),
    # --- audit records: read by everyone ------------------------------------------------
    ("GET", "/api/v1/audit-records/"): Row(STAFF, query={"source": "api"}),
    ("GET", "/api/v1/audit-records/{id}/"): Row(STAFF, obj="record"),
    ("GET", "/api/v1/audit-records/export/"): Row(STAFF, query={"action": "create"}),
}


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker, target_database_dsn):
    """Objects of every kind the endpoints show, and a read-write token per role; built once
    for the module inside a transaction that is rolled back at its end."""
    from backups.models import BackupMethod
    from backups.services import backup_plan_ensure, backup_plan_save, backup_run_now, drill_request
    from incidents.models import Alert
    from incidents.services import incident_open
    from maintenance.models import MaintenanceWindow, WindowKind
    from maintenance.services import window_schedule
    from opsportal.audit.models import AuditRecord
    from opsportal.monitoring.services import alerts_evaluate
    from opsportal.operations.services import operation_request
    from opsportal.systems.models import DockerEngine, PostgresDatabase

    with django_db_blocker.unblock(), transaction.atomic():
        load_defaults()
        root = make_user(SUPERUSER, username="api-matrix-root")
        engine = DockerEngine.objects.create(
            name="api-engine",
            base_url=f"tcp://127.0.0.1:{realsystems.free_port()}",
            timeout_seconds=1,
        )
        info = psycopg.conninfo.conninfo_to_dict(target_database_dsn)
        database = PostgresDatabase.objects.create(
            name="api-database",
            host=info.get("host", "127.0.0.1"),
            port=int(info.get("port", 5432)),
            dbname=info["dbname"],
            username=info.get("user", "postgres"),
            connect_timeout_seconds=2,
        )
        alerts_evaluate(
            values={(database.pk, "up", ""): (0.0, timezone.now())},
            systems={database.pk: database},
        )
        incident = incident_open(
            title="API matrix: containers restarting",
            severity="sev2",
            category="container",
            reporter=root,
            affected_systems=[engine],
        )
        operation = operation_request(
            kind="container_list", target=engine, params={}, actor=root, incident=incident
        )
        plan = backup_plan_ensure(database=database)
        plan.method = BackupMethod.NETWORK
        backup_plan_save(plan=plan)
        backup = backup_run_now(database=database, actor=root, reason="api matrix")
        assert backup.is_restorable, backup.message
        drill = drill_request(backup=backup, actor=root)
        starts_at = timezone.now() + dt.timedelta(hours=2)
        window = window_schedule(
            window=MaintenanceWindow(
                title="API upgrade",
                kind=WindowKind.AD_HOC,
                starts_at=starts_at,
                ends_at=starts_at + dt.timedelta(hours=1),
            ),
            systems=[database],
            actor=root,
        )
        tokens = {ANONYMOUS: None}
        for role in (*GROUPS, SUPERUSER):
            user = root if role == SUPERUSER else make_user(role)
            tokens[role] = api_token_create(user=user, name="matrix", scope="read_write")[1]
        yield {
            "tokens": tokens,
            "objects": {
                "incident": incident,
                "alert": Alert.objects.first(),
                "database": database,
                "operation": operation,
                "backup": backup,
                "drill": drill,
                "window": window,
                "record": AuditRecord.objects.order_by("-id").first(),
            },
            "values": {
                "engine": engine.name,
                "database": database.name,
                "in_3h": (timezone.now() + dt.timedelta(hours=3)).isoformat(),
                "in_4h": (timezone.now() + dt.timedelta(hours=4)).isoformat(),
            },
        }
        transaction.set_rollback(True)


def _fill(value, values):
    if isinstance(value, str) and value.startswith("<") and value.endswith(">"):
        return values[value[1:-1]]
    if isinstance(value, dict):
        return {k: _fill(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, values) for v in value]
    return value


def call(client: ApiClient, method: str, path: str, row: Row, world) -> object:
    if row.obj:
        path = path.replace("{id}", str(world["objects"][row.obj].pk))
    if row.query:
        query = _fill(row.query, world["values"])
        path += "?" + "&".join(f"{k}={v}" for k, v in query.items())
    with transaction.atomic():
        response = client.request(method, path, _fill(row.body or {}, world["values"]))
        transaction.set_rollback(True)
    return response


@pytest.mark.parametrize("role", ROLES)
def test_each_role_reaches_exactly_what_the_table_declares(world, role):
    client = ApiClient(world["tokens"][role])
    mismatches = []
    for (method, path), row in API_ROLES.items():
        response = call(client, method, path, row, world)
        allowed = row.ok if role in row.allowed else 403
        wanted = 401 if role == ANONYMOUS else allowed
        if response.status_code != wanted:
            body = b"" if response.streaming else response.content[:300]
            mismatches.append(
                f"{method} {path} as {role}: expected {wanted}, got {response.status_code} {body!r}"
            )
        elif wanted >= 400:
            body = response.json()
            assert set(body) >= {"error", "detail"} and body["detail"], body
    assert not mismatches, f"{len(mismatches)} differ from API_ROLES:\n" + "\n".join(mismatches)


def test_every_endpoint_in_the_schema_has_a_row():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    in_schema = {
        (method.upper(), path)
        for path, item in schema["paths"].items()
        for method in item
        if method in ("get", "post", "patch", "put", "delete")
    }
    assert in_schema - set(API_ROLES) == set(), "endpoints without a row in API_ROLES"
    assert set(API_ROLES) - in_schema == set(), "rows for endpoints that no longer exist"


def test_a_read_only_token_reads_everything_and_changes_nothing(world):
    from django.contrib.auth import get_user_model

    root = get_user_model().objects.get(username="api-matrix-root")
    with transaction.atomic():
        plain = api_token_create(user=root, name="read-only", scope="read")[1]
        client = ApiClient(plain)
        for (method, path), row in API_ROLES.items():
            response = call(client, method, path, row, world)
            if method == "GET":
                assert response.status_code == 200, (path, response.status_code)
            else:
                assert response.status_code == 403, (method, path, response.status_code)
                assert "read-only" in response.json()["detail"]
        transaction.set_rollback(True)
