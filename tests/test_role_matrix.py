"""The role matrix: who may reach every URL the portal serves.

For anonymous visitors, each seeded role group from `load_defaults` and a superuser, every
URL pattern the resolver knows is requested with GET, and every view that changes something
with a minimal POST, against real objects of every model. What each role may do is declared
once, in ROLE_MATRIX below; the expected status is derived from it, and for a model's list
the admin actions each role is offered too. A URL pattern with no row fails
`test_every_url_pattern_has_a_row`, so a new view must say who may use it.

Where today's code lets a role do what it should not, the row declares the secure
expectation and says which hole it is (so it fails until the fix is merged); rows marked
FINDING record a role that cannot do what its permissions suggest.

The objects are built once for the module (inside a transaction rolled back at the end) and
each request runs in a savepoint that is rolled back, so a POST that one role may make
changes nothing another role's request sees. Systems point at closed local ports, webhooks
at a closed port too, so nothing a POST sets off can reach a real system.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.contrib import messages
from django.contrib.auth import get_user_model, login
from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
from django.contrib.sessions.middleware import SessionMiddleware
from django.db import transaction
from django.test import Client, RequestFactory, override_settings
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

from opsportal.defaults import load_defaults
from tests import realsystems

ANONYMOUS = "anonymous"
VIEWERS = "Viewers"
ON_CALL = "On-call engineers"
DBA = "Database admins"
DEVOPS = "DevOps"
SECURITY = "Security team"
SUPERUSER = "superuser"
GROUPS = (VIEWERS, ON_CALL, DBA, DEVOPS, SECURITY)
ROLES = (ANONYMOUS, *GROUPS, SUPERUSER)

# Each test runs in its own savepoint inside the module's transaction (see `world`).
pytestmark = pytest.mark.django_db


@dataclass(frozen=True)
class Access:
    """Who may use one URL pattern.

    get/post: the roles that may; every other role is refused. post=None: the view changes
    nothing, so it is not POSTed. ok/post_ok: the status an allowed request answers with
    (a tuple where several are right: a page that reports a failing check says 503).
    refused: how the view refuses: 403, or "message" for views that redirect back with a
    "You need the permission …" error (the service refuses, the view reports it).
    login: False for views outside the admin login (health, feeds), which anonymous
    visitors reach like anyone else. query: added to the GET; post_data: the minimal POST
    ("<app.model>" stands for the world's object of that model).
    """

    get: frozenset[str] | str  # or POST_ONLY
    post: frozenset[str] | None = None
    ok: int | tuple[int, ...] = 200
    post_ok: int | tuple[int, ...] = (200, 302)
    refused: int | str = 403
    login: bool = True
    query: str = ""
    post_data: dict = field(default_factory=dict)
    # A model's list: the admin actions (run from the list with POST) and who is offered each.
    # Django runs only an action it offers, so what is offered is what may be run.
    actions: dict[str, frozenset[str]] | None = None


def roles(*names: str) -> frozenset[str]:
    return frozenset(names)


NOBODY = roles()
STAFF = roles(*GROUPS, SUPERUSER)
EVERYONE = roles(*ROLES)
ONLY_SUPERUSER = roles(SUPERUSER)
# Views that answer only POST: a GET is 405 for every signed-in user.
POST_ONLY = "POST only"


# --- the objects every URL is filled with ------------------------------------------------


@dataclass
class World:
    users: dict[str, object]
    # One real object of every model the admin shows, by its "app_label.model_name".
    objects: dict[str, object]
    incident_step: object
    window_step: object
    evidence: object
    calendar_token: str
    # A valid acknowledge link (token) for the world's incident, as a page carries it.
    acknowledge_token: str = ""
    shift_calendar_token: str = ""


def _closed_port() -> int:
    # Nothing listens there: a connection is refused at once, so a POST that reaches out
    # (Test connection, a webhook delivery) answers quickly and touches nothing real.
    return realsystems.free_port()


def _build_world(*, target_database_dsn: str, media_root: Path) -> World:
    import psycopg
    from axes.models import AccessAttempt, AccessFailureLog, AccessLog
    from django_celery_beat.models import (
        ClockedSchedule,
        CrontabSchedule,
        IntervalSchedule,
        PeriodicTask,
        SolarSchedule,
    )

    from backups.models import BackupMethod
    from backups.services import (
        backup_plan_ensure,
        backup_plan_save,
        backup_run_now,
        drill_request,
        restore_request,
    )
    from incidents.models import Alert, Escalation, EscalationPolicy, IncidentStep, Runbook
    from incidents.services import incident_attach_runbook, incident_open
    from incidents.services.acknowledge import acknowledge_link_create
    from maintenance.models import MaintenancePlan, MaintenanceWindow, RecurringTask, WindowKind
    from maintenance.services import (
        calendar_subscription_get,
        task_generate_occurrences,
        window_schedule,
    )
    from opsportal.api.services import api_token_create
    from opsportal.audit.models import AuditRecord
    from opsportal.health.models import Heartbeat
    from opsportal.health.services import heartbeat_record
    from opsportal.monitoring.models import AlertRule, AlertState, CollectionSchedule
    from opsportal.monitoring.services import alerts_evaluate, collection_schedules_ensure
    from opsportal.operations.models import Evidence
    from opsportal.operations.services import operation_request
    from opsportal.people.models import (
        Contact,
        Notification,
        OnCallOverride,
        OnCallRotation,
        Responsibility,
        Team,
        WebhookChannel,
    )
    from opsportal.people.services import notify
    from opsportal.people.shifts import shift_calendar_get
    from opsportal.systems.models import (
        DockerEngine,
        HttpEndpoint,
        PostgresDatabase,
        RedisCache,
        System,
    )

    load_defaults()
    User = get_user_model()
    users: dict[str, object] = {ANONYMOUS: None}
    for group in GROUPS:
        user = User.objects.create_user(
            "matrix-" + group.lower().replace(" ", "-"), password="matrix-pass-123", is_staff=True
        )
        user.groups.add(Group.objects.get(name=group))
        users[group] = user
    root = User.objects.create_superuser("matrix-root", "root@example.com", "matrix-pass-123")
    users[SUPERUSER] = root

    # Systems: harmless targets. The PostgreSQL one is this run's own target database
    # (a real backup of it is taken below); the others are closed ports.
    engine = DockerEngine.objects.create(
        name="matrix-engine", base_url=f"tcp://127.0.0.1:{_closed_port()}", timeout_seconds=1
    )
    info = psycopg.conninfo.conninfo_to_dict(target_database_dsn)
    database = PostgresDatabase.objects.create(
        # Named like its database: a restore is confirmed by typing the one or (issue 9,
        # hole 13) the other, and this world is built the same before and after that fix.
        name=info["dbname"],
        host=info.get("host", "127.0.0.1"),
        port=int(info.get("port", 5432)),
        dbname=info["dbname"],
        username=info.get("user", "postgres"),
        connect_timeout_seconds=2,
        docker_engine=engine,
        container_name="matrix-postgres",
    )
    cache = RedisCache.objects.create(
        name="matrix-redis", host="127.0.0.1", port=_closed_port(), timeout_seconds=1
    )
    endpoint = HttpEndpoint.objects.create(
        name="matrix-api", url=f"http://127.0.0.1:{_closed_port()}/health", timeout_seconds=1
    )
    collection_schedules_ensure()

    # People: the seeded teams and rotation, a contact, a webhook at a closed port.
    on_call_team = Team.objects.get(responsibility=Responsibility.ON_CALL)
    contact = Contact.objects.create(
        name="Matrix Contact", team=on_call_team, email="matrix@example.com"
    )
    webhook = WebhookChannel.objects.create(
        name="matrix-chat", team=on_call_team, url=f"http://127.0.0.1:{_closed_port()}/hook"
    )
    override = OnCallOverride.objects.create(
        rotation=OnCallRotation.objects.first(),
        contact=contact,
        starts_at=timezone.now(),
        ends_at=timezone.now() + dt.timedelta(hours=8),
        reason="Matrix swap",
    )
    notify(responsibility=Responsibility.ON_CALL, subject="Matrix page", body="A test page.")
    heartbeat_record(name="matrix")

    # An alert rule fires on the database being down: alert state, alert and incident.
    alerts_evaluate(
        values={(database.pk, "up", ""): (0.0, timezone.now())}, systems={database.pk: database}
    )
    incident = incident_open(
        title="Matrix: containers restarting",
        severity="sev2",
        category="container",
        reporter=root,
        affected_systems=[engine],
    )
    incident_attach_runbook(
        incident=incident, runbook=Runbook.objects.get(name="Container Issues"), actor=root
    )
    incident_step = IncidentStep.objects.get(incident=incident, operation_kind="container_restart")
    operation = operation_request(
        kind="evidence_preserve",
        target=engine,
        params={"container": "matrix-web"},
        actor=root,
        reason="matrix",
        incident=incident,
    )
    # Evidence is captured only by running evidence_preserve against a live container
    # (tests/operations/test_containers.py does that); access to it needs only the row
    # and its file, written here as the runner writes them.
    content = b"docker inspect output\n"
    relative = Path("evidence") / f"operation-{operation.pk}" / "inspect.json"
    (media_root / relative).parent.mkdir(parents=True, exist_ok=True)
    (media_root / relative).write_bytes(content)
    evidence = Evidence.objects.create(
        operation=operation,
        incident=incident,
        name="inspect.json",
        path=str(relative),
        size_bytes=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
        captured_by=root,
        captured_at=timezone.now(),
        source_system=f"matrix-web on {engine.name}",
    )

    # Backups: a real pg_dump of the target database, then a restore and a drill of it
    # requested (never run: their tasks are dispatched only on commit, and this rolls back).
    plan = backup_plan_ensure(database=database)
    # Registered "inside a container" on an engine at a closed port, so its default plan
    # dumps with docker exec; this world's dump goes over the network to the real server.
    plan.method = BackupMethod.NETWORK
    plan = backup_plan_save(plan=plan)
    backup = backup_run_now(database=database, actor=root, reason="matrix")
    assert backup.is_restorable, backup.message
    restore = restore_request(
        backup=backup,
        target=database,
        actor=root,
        reason="matrix",
        confirmation=database.dbname,
        dispatch=False,
    )
    drill = drill_request(backup=backup, actor=root)

    # The status page: a component, a subscriber, and the incident published on it.
    from incidents.services import incident_publish
    from opsportal.statuspage.models import Component, Subscriber

    component = Component.objects.create(name="Matrix API")
    component.systems.set([endpoint])
    subscriber = Subscriber.objects.create(email="matrix-subscriber@example.org")
    public_incident = incident_publish(
        incident=incident, title="Matrix: slow API", components=[component], actor=root
    )

    # Maintenance: a window (with its checklist) two hours ahead, a plan, a task's due date.
    starts_at = timezone.now() + dt.timedelta(hours=2)
    window = window_schedule(
        window=MaintenanceWindow(
            title="Matrix upgrade",
            kind=WindowKind.AD_HOC,
            starts_at=starts_at,
            ends_at=starts_at + dt.timedelta(hours=1),
        ),
        systems=[database],
        actor=root,
    )
    task = RecurringTask.objects.order_by("name").first()
    task_generate_occurrences(task=task)
    subscription = calendar_subscription_get(user=root)
    acknowledge_url = acknowledge_link_create(incident=incident, contact=contact)
    shift_calendar = shift_calendar_get(contact=contact)
    api_token, _ = api_token_create(user=root, name="matrix pipeline", scope="read_write")

    # Sign-in records as django-axes keeps them: a sign-in (what the login view does once
    # every factor is checked) and then a wrong password typed into the login form.
    signing_in = RequestFactory().post("/admin/login/", REMOTE_ADDR="127.0.0.1")
    SessionMiddleware(lambda request: None).process_request(signing_in)
    login(signing_in, root, backend="django.contrib.auth.backends.ModelBackend")
    Client().post("/admin/login/", {"username": "matrix-root", "password": "wrong"})
    # The portal leaves axes' failure log off (AXES_ENABLE_ACCESS_FAILURE_LOG), so its admin
    # page can only show a row written directly.
    failure = AccessFailureLog.objects.create(
        username="matrix-root", ip_address="127.0.0.1", user_agent="matrix", path_info="/"
    )
    # Schedules django-celery-beat offers that the portal's own tasks do not use.
    clocked = ClockedSchedule.objects.create(clocked_time=timezone.now() + dt.timedelta(days=1))
    solar = SolarSchedule.objects.create(event="sunrise", latitude=52.5, longitude=13.4)

    objects = {
        "auth.group": Group.objects.get(name=VIEWERS),
        "auth.user": users[VIEWERS],
        "axes.accessattempt": AccessAttempt.objects.first(),
        "axes.accesslog": AccessLog.objects.first(),
        "axes.accessfailurelog": failure,
        "django_celery_beat.periodictask": PeriodicTask.objects.order_by("name").first(),
        "django_celery_beat.clockedschedule": clocked,
        "django_celery_beat.crontabschedule": CrontabSchedule.objects.first(),
        "django_celery_beat.solarschedule": solar,
        "django_celery_beat.intervalschedule": IntervalSchedule.objects.first(),
        "audit.auditrecord": AuditRecord.objects.order_by("-id").first(),
        "systems.dockerengine": engine,
        "systems.postgresdatabase": database,
        "systems.rediscache": cache,
        "systems.httpendpoint": endpoint,
        "systems.system": System.objects.get(pk=database.pk),
        "people.team": on_call_team,
        "people.contact": contact,
        "people.oncallrotation": OnCallRotation.objects.first(),
        "people.oncalloverride": override,
        "people.webhookchannel": webhook,
        "people.notification": Notification.objects.first(),
        "health.heartbeat": Heartbeat.objects.get(name="matrix"),
        "operations.operation": operation,
        "operations.evidence": evidence,
        "monitoring.alertrule": AlertRule.objects.order_by("name").first(),
        "monitoring.collectionschedule": CollectionSchedule.objects.first(),
        "monitoring.alertstate": AlertState.objects.first(),
        "incidents.incident": incident,
        "incidents.runbook": Runbook.objects.get(name="Container Issues"),
        "incidents.alert": Alert.objects.first(),
        "incidents.publicincident": public_incident,
        "statuspage.component": component,
        "statuspage.subscriber": subscriber,
        "incidents.escalationpolicy": EscalationPolicy.objects.order_by("name").first(),
        "incidents.escalation": Escalation.objects.first(),
        "backups.backupplan": plan,
        "backups.backup": backup,
        "backups.restore": restore,
        "backups.restoredrill": drill,
        "maintenance.maintenancewindow": window,
        "maintenance.maintenanceplan": MaintenancePlan.objects.order_by("name").first(),
        "maintenance.recurringtask": task,
        "maintenance.taskoccurrence": task.occurrences.order_by("due_at").first(),
        "api.apitoken": api_token,
    }
    missing = [label for label, obj in objects.items() if obj is None]
    assert not missing, f"no object was created for {missing}"
    return World(
        users=users,
        objects=objects,
        incident_step=incident_step,
        window_step=window.steps.order_by("id").first(),
        evidence=evidence,
        calendar_token=subscription.token,
        acknowledge_token=acknowledge_url.rstrip("/").rsplit("/", 1)[1],
        shift_calendar_token=shift_calendar.token,
    )


# --- walking the resolver and filling in each pattern -------------------------------------


@dataclass(frozen=True)
class Pattern:
    key: str  # "namespace:name", or the route for a pattern without a name
    route: str


def url_patterns() -> list[Pattern]:
    def walk(patterns, prefix="", namespace=""):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                inner = ":".join(n for n in (namespace, pattern.namespace or "") if n)
                yield from walk(pattern.url_patterns, prefix + str(pattern.pattern), inner)
            elif isinstance(pattern, URLPattern):
                route = prefix + str(pattern.pattern)
                if pattern.name:
                    key = f"{namespace}:{pattern.name}" if namespace else pattern.name
                else:
                    key = route
                yield Pattern(key, route)

    return list(walk(get_resolver().url_patterns))


# Which value fills a parameter that names an action, per pattern.
ACTIONS = {
    "admin:incidents_incident_transition": "acknowledge",
    "admin:maintenance_maintenancewindow_step": "done",
}
_PARAMETER = re.compile(r"<(?:(?P<converter>\w+):)?(?P<name>\w+)>|\(\?P<(?P<group>\w+)>[^)]*\)")


def concrete_url(pattern: Pattern, world: World, variant: str | None = None) -> str:
    """The pattern's URL with each parameter set to a real object (or value) of the world."""
    parts = pattern.route.split("/")
    label = f"{parts[1]}.{parts[2]}" if len(parts) > 2 else ""
    if pattern.route.startswith("api/v1/"):
        # A session is no credential for the API: refused before any object is looked up.
        return "/" + _PARAMETER.sub("1", pattern.route).replace("^", "").replace("$", "")
    if pattern.route.startswith("admin/r/"):  # "view on site", asked for the incident
        label = "incidents.incident"

    def value(match: re.Match) -> str:
        name = match.group("name") or match.group("group")
        if variant is not None and name in ("app_label", "action"):
            return variant
        if name in ("object_id", "pk"):
            if label not in world.objects:
                raise AssertionError(
                    f"{pattern.key}: the world has no {label or pattern.route} object; create "
                    "one in _build_world (through its service) and add it to `objects`"
                )
            return str(world.objects[label].pk)
        if name == "content_type_id":
            return str(ContentType.objects.get_for_model(world.objects[label]).pk)
        if name == "incident_id":  # the status page's page of a published incident
            return str(world.objects["incidents.incident"].pk)
        if name == "signed":  # a confirmation link that is not one
            return "not-a-signed-link"
        if name == "step_id":
            step = world.incident_step if parts[1] == "incidents" else world.window_step
            return str(step.pk)
        if name == "evidence_id":
            return str(world.evidence.pk)
        if name == "action":
            return ACTIONS[pattern.key]
        if name == "id":  # a user's password page
            return str(world.objects["auth.user"].pk)
        if name == "token":
            if pattern.key == "incidents:acknowledge_link":
                return world.acknowledge_token
            if pattern.key == "people:shift_feed":
                return world.shift_calendar_token
            return world.calendar_token
        if name == "incident_id":
            return str(world.objects["incidents.incident"].pk)
        if name == "url":  # the admin's catch-all
            return "no-such-page/"
        raise AssertionError(
            f"{pattern.key}: no value for the parameter {name!r}; say which in concrete_url"
        )

    url = _PARAMETER.sub(value, pattern.route)
    url = url.replace("^", "").replace("$", "").replace("\\Z", "")
    return "/" + url


# --- asking as each role --------------------------------------------------------------------

LOGIN = "login"
MESSAGE = "message"


def outcome(response) -> int | str:
    """What a response means for access: its status, "login" for a redirect to the login
    page, "message" for a redirect carrying a permission refusal."""
    if response.status_code in (301, 302):
        if response["Location"].startswith("/admin/login/"):
            return LOGIN
        refusals = [
            m
            for m in messages.get_messages(response.wsgi_request)
            if m.level == messages.ERROR and "permission" in str(m)
        ]
        if refusals:
            return MESSAGE
    return response.status_code


def expected(access: Access, role: str, method: str) -> tuple[int | str, ...] | None:
    if method == "POST" and access.post is None:
        return None
    allowed = access.get if method == "GET" else access.post
    if allowed == POST_ONLY:
        return (LOGIN,) if role == ANONYMOUS and access.login else (405,)
    if role == ANONYMOUS and access.login and role not in allowed:
        return (LOGIN,)
    if role in allowed:
        ok = access.ok if method == "GET" else access.post_ok
        return ok if isinstance(ok, tuple) else (ok,)
    return (access.refused,)


def offered_actions(response) -> set[str]:
    """The admin actions a model's list offers (its "Action" menu)."""
    form = response.context.get("action_form") if response.context else None
    if form is None:
        return set()
    return {name for name, _ in form.fields["action"].choices if name}


def ask(client: Client, method: str, url: str, access: Access, world: World):
    # Whatever the request changes is undone, so each role sees the same world.
    with transaction.atomic():
        if method == "GET":
            response = client.get(url + (f"?{access.query}" if access.query else ""))
        else:
            # "<app.model>" stands for the primary key of the world's object of that model.
            data = {
                name: world.objects[value[1:-1]].pk if str(value).startswith("<") else value
                for name, value in access.post_data.items()
            }
            response = client.post(url, data)
        result = outcome(response)
        transaction.set_rollback(True)
    return result, response


# --- the tests ----------------------------------------------------------------------------

MATRIX_SETTINGS = {
    # Tokens set here, so the token-guarded feeds answer the same in every environment.
    "METRICS_TOKEN": "matrix-metrics-token",
    "HEALTH_TOKEN": "matrix-health-token",
    "ALERTMANAGER_WEBHOOK_TOKEN": "matrix-alertmanager-token",
}


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker, target_database_dsn, tmp_path_factory):
    """Built once for the module; everything is rolled back at its end."""
    media_root = tmp_path_factory.mktemp("matrix-media")
    backup_root = tmp_path_factory.mktemp("matrix-backups")
    with (
        override_settings(
            MEDIA_ROOT=media_root,
            BACKUP_ROOT=backup_root,
            # The users' passwords are never what is tested here: hash them quickly.
            PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
            **MATRIX_SETTINGS,
        ),
        django_db_blocker.unblock(),
        transaction.atomic(),
    ):
        yield _build_world(target_database_dsn=target_database_dsn, media_root=media_root)
        transaction.set_rollback(True)


def cases(world: World):
    for pattern in url_patterns():
        access = ROLE_MATRIX.get(pattern.key)
        if access is None:
            continue
        if isinstance(access, dict):
            for variant, row in access.items():
                yield f"{pattern.key}[{variant}]", concrete_url(pattern, world, variant), row
        else:
            yield pattern.key, concrete_url(pattern, world), access


@pytest.mark.parametrize("role", ROLES)
def test_each_role_reaches_exactly_what_the_matrix_declares(world, role, client):
    client.raise_request_exception = False  # a 500 is a finding to list, not a stop
    user = world.users[role]
    mismatches = []
    for key, url, access in cases(world):
        for method in ("GET", "POST"):
            wanted = expected(access, role, method)
            if wanted is None:
                continue
            if user is not None and "_auth_user_id" not in client.session:
                client.force_login(user)  # again after the logout view
            got, response = ask(client, method, url, access, world)
            if got not in wanted:
                shown = " or ".join(str(w) for w in wanted)
                mismatches.append(f"{method} {url} ({key}) as {role}: expected {shown}, got {got}")
            elif method == "GET" and got == 200 and access.actions is not None:
                offered = offered_actions(response)
                declared = {name for name, who in access.actions.items() if role in who}
                if offered != declared:
                    mismatches.append(
                        f"actions on {url} ({key}) for {role}: expected {sorted(declared)}, "
                        f"offered {sorted(offered)}"
                    )
    assert not mismatches, f"{len(mismatches)} differ from ROLE_MATRIX:\n" + "\n".join(mismatches)


def test_every_url_pattern_has_a_row():
    missing = [p for p in url_patterns() if p.key not in ROLE_MATRIX]
    lines = []
    covered: set[str] = set()
    # A newly registered model: its six admin pages in one line.
    for pattern in missing:
        found = re.fullmatch(r"admin/(\w+)/(\w+)/", pattern.route)
        if found and pattern.key.endswith("_changelist"):
            label = f"{found[1]}.{found[2]}"
            covered |= set(model_pages(label, view=NOBODY))
            lines.append(
                f'    **model_pages("{label}", view=STAFF, add=..., change=..., delete=...),'
            )
    lines += [
        f'    "{p.key}": Access(get=..., post=...),  # {p.route}'
        for p in missing
        if p.key not in covered
    ]
    assert not missing, (
        "These URL patterns have no row in ROLE_MATRIX (tests/test_role_matrix.py). Declare "
        "who may use each: get/post are the roles that may (VW, OC, DBA, DEV, SEC, SU, STAFF, "
        "RESPONDERS, EVERYONE, NOBODY); leave post out for a view that changes nothing; "
        "get=POST_ONLY for a view that answers only POST.\n" + "\n".join(lines)
    )


def test_the_matrix_names_no_pattern_that_is_gone():
    keys = {p.key for p in url_patterns()}
    stale = sorted(set(ROLE_MATRIX) - keys)
    assert not stale, f"ROLE_MATRIX rows for URL patterns that no longer exist: {stale}"


# --- the table -----------------------------------------------------------------------------

# Short names for the table's rows.
VW, OC, DEV, SEC, SU = VIEWERS, ON_CALL, DEVOPS, SECURITY, SUPERUSER
# Every role but Viewers works incidents and may test a system's connection.
RESPONDERS = roles(OC, DBA, DEV, SEC, SU)


def model_pages(
    label: str,
    *,
    view: frozenset[str],
    add: frozenset[str] = ONLY_SUPERUSER,
    change: frozenset[str] = ONLY_SUPERUSER,
    delete: frozenset[str] = ONLY_SUPERUSER,
    change_post_ok: int | tuple[int, ...] = (200, 302),
    change_post_data: dict | None = None,
    actions: dict[str, frozenset[str]] | None = None,
) -> dict[str, Access]:
    """The six pages Django's admin serves for a registered model.

    view: who may open the list, an object's page and its history; add/change/delete: who
    may open the add form / save an object's page / open the delete confirmation. An empty
    POST never saves or deletes anything valid: the forms answer with their errors and the
    delete page with its confirmation (deleting needs post=yes)."""
    app, model = label.split(".")
    prefix = f"admin:{app}_{model}"
    return {
        f"{prefix}_changelist": Access(
            get=view | change, actions={"delete_selected": delete, **(actions or {})}
        ),
        f"{prefix}_add": Access(get=add, post=add),
        f"{prefix}_change": Access(
            get=view | change,
            post=change,
            post_ok=change_post_ok,
            post_data=change_post_data or {},
        ),
        f"{prefix}_history": Access(get=view | change),
        f"{prefix}_delete": Access(get=delete, post=delete),
        # Django's shortcut from an object's bare URL to its change page: any staff user.
        f"admin/{app}/{model}/<path:object_id>/": Access(get=STAFF, ok=302),
    }


ROLE_MATRIX: dict[str, Access | dict[str, Access]] = {
    # --- outside the admin: liveness, feeds and webhooks with their own credentials --------
    "health": Access(get=EVERYONE, login=False),
    # 503: the world's systems are unreachable on purpose, and critical.
    "health-detailed": Access(get=EVERYONE, ok=(200, 503), login=False),
    # A token is set (MATRIX_SETTINGS) and nobody sends it: a session is no credential here.
    "metrics": Access(get=NOBODY, refused=401, login=False),
    "incidents:alertmanager_webhook": Access(get=POST_ONLY, post=NOBODY, refused=401, login=False),
    # The secret link is the credential (calendar apps cannot sign in).
    "maintenance:calendar_feed": Access(get=EVERYONE, login=False),
    # The public status page (opsportal/statuspage/): anyone, signed in or not. An empty
    # subscribe form is refused (400) as a bad address; a confirmation link that is not one
    # is refused (400); the calendar token is no unsubscribe link (404). Nothing changes.
    **{
        f"statuspage:{name}": Access(get=EVERYONE, login=False)
        for name in ("index", "incident", "history", "feed", "calendar")
    },
    "statuspage:subscribe": Access(get=EVERYONE, post=EVERYONE, post_ok=400, login=False),
    "statuspage:confirm": Access(get=EVERYONE, ok=400, post=EVERYONE, post_ok=400, login=False),
    "statuspage:unsubscribe": Access(get=EVERYONE, ok=404, post=EVERYONE, post_ok=404, login=False),
    # A page's signed single-use link is the credential, for acknowledging that incident
    # only (tests/incidents/test_acknowledge_links.py has the refusals).
    "incidents:acknowledge_link": Access(get=EVERYONE, post=EVERYONE, login=False),
    # A person's shifts feed: its secret link is the credential, like the maintenance one.
    "people:shift_feed": Access(get=EVERYONE, login=False),
    # --- the REST API (issue 12): an API token is the only credential -------------------------
    # A signed-in session is refused (401) at every endpoint; who may call each with a token
    # is tests/api/test_roles.py's table (API_ROLES), which covers every endpoint the schema has.
    **{
        f"api:{name}": Access(get=NOBODY, post=NOBODY, refused=401, login=False)
        for name in (
            "incident-list",
            "incident-detail",
            "incident-timeline",
            *[
                f"incident-{action}"
                for action in (
                    "acknowledge",
                    "investigate",
                    "mitigate",
                    "resolve",
                    "close",
                    "reopen",
                    "escalate",
                    "notes",
                    "runbooks",
                    "operations",
                )
            ],
            "alert-list",
            "alert-detail",
            "system-list",
            "system-detail",
            "operation-list",
            "operation-detail",
            "backup-list",
            "backup-detail",
            "backup-latest-verified",
            "restoredrill-list",
            "restoredrill-detail",
            "maintenance-now",
            "maintenancewindow-list",
            "maintenancewindow-detail",
            "maintenancewindow-cancel",
            "auditrecord-list",
            "auditrecord-detail",
            "auditrecord-export",
        )
    },
    # Any other path under /api/v1/: the API's own 404 body, for everyone.
    "api:not_found": Access(get=EVERYONE, ok=404, post=EVERYONE, post_ok=404, login=False),
    # The OpenAPI document: a token or a signed-in session (the docs page fetches it).
    "api:schema": Access(get=STAFF, refused=401, login=False),
    # Swagger UI, served from the installed package: signed-in users.
    "api:docs": Access(get=STAFF),
    # --- the admin site's own pages --------------------------------------------------------
    "admin:index": Access(get=STAFF),
    # Signed-in users are sent on to the index.
    "admin:login": Access(get=roles(ANONYMOUS), login=False, refused=302),
    "admin:logout": Access(get=POST_ONLY, post=STAFF),
    "admin:password_change": Access(get=STAFF, post=STAFF),
    "admin:password_change_done": Access(get=STAFF),
    "admin:autocomplete": Access(
        get=STAFF, query="app_label=people&model_name=rotationmember&field_name=contact&term=Matrix"
    ),
    "admin:jsi18n": Access(get=STAFF),
    # No portal model has a public page ("view on site"): 404 for every staff user.
    "admin:view_on_site": Access(get=STAFF, ok=404),
    "admin:app_list": {
        **{app: Access(get=ONLY_SUPERUSER, refused=404) for app in ("auth", "axes")},
        **{
            app: Access(get=STAFF)
            for app in (
                "django_celery_beat",
                "audit",
                "systems",
                "people",
                "health",
                "operations",
                "monitoring",
                "statuspage",
                "incidents",
                "backups",
                "maintenance",
                "api",
            )
        },
    },
    "admin/(?P<url>.*)$": Access(get=STAFF, ok=404),
    # --- accounts and sign-in records: superusers only --------------------------------------
    **model_pages("auth.group", view=ONLY_SUPERUSER),
    **model_pages("auth.user", view=ONLY_SUPERUSER),
    "admin:auth_user_password_change": Access(get=ONLY_SUPERUSER, post=ONLY_SUPERUSER),
    # Resetting someone else's second factor: superusers only (audited).
    "admin:auth_user_two_factor_reset": Access(get=ONLY_SUPERUSER, post=ONLY_SUPERUSER),
    # --- one's own second factor: every signed-in staff user --------------------------------
    "accounts:two_factor": Access(get=STAFF),
    "accounts:two_factor_setup": Access(get=STAFF, post=STAFF),
    # The test clients' sessions are verified already: sent on to where they were going.
    "accounts:two_factor_verify": Access(get=STAFF, ok=302, post=STAFF, post_ok=302),
    "accounts:two_factor_backup_codes": Access(get=POST_ONLY, post=STAFF),
    **model_pages(
        "axes.accessattempt",
        view=ONLY_SUPERUSER,
        add=NOBODY,
        actions={"cleanup_expired_attempts": ONLY_SUPERUSER},
    ),
    **model_pages("axes.accesslog", view=ONLY_SUPERUSER, add=NOBODY),
    **model_pages("axes.accessfailurelog", view=ONLY_SUPERUSER, add=NOBODY),
    # --- schedules (django-celery-beat) ------------------------------------------------------
    # NEW HOLE (not in issue 9's list): django-celery-beat's list actions declare no
    # permission, so today every role, Viewers included, is offered them and can switch off
    # (or run at once) any schedule (backups, monitoring, sweepers) with a queryset update
    # that leaves no audit record. Secure: whoever may change schedules, DevOps.
    **model_pages(
        "django_celery_beat.periodictask",
        view=STAFF,
        change=roles(DEV, SU),
        actions={
            name: roles(DEV, SU)
            for name in ("enable_tasks", "disable_tasks", "toggle_tasks", "run_tasks")
        },
    ),
    **model_pages("django_celery_beat.clockedschedule", view=STAFF),
    **model_pages("django_celery_beat.crontabschedule", view=STAFF),
    **model_pages("django_celery_beat.solarschedule", view=STAFF),
    **model_pages("django_celery_beat.intervalschedule", view=STAFF),
    # --- the audit log: read by everyone, changed by nobody --------------------------------
    **model_pages("audit.auditrecord", view=STAFF, add=NOBODY, change=NOBODY, delete=NOBODY),
    "admin:audit_auditrecord_export": Access(get=STAFF),
    # --- systems ---------------------------------------------------------------------------
    **model_pages(
        "systems.dockerengine",
        view=STAFF,
        add=roles(DEV, SU),
        change=roles(DEV, SU),
        delete=roles(DEV, SU),
    ),
    **model_pages(
        "systems.postgresdatabase",
        view=STAFF,
        add=roles(DBA, DEV, SU),
        change=roles(DBA, DEV, SU),
        delete=roles(DEV, SU),
    ),
    **model_pages(
        "systems.rediscache",
        view=STAFF,
        add=roles(DEV, SU),
        change=roles(DEV, SU),
        delete=roles(DEV, SU),
    ),
    **model_pages(
        "systems.httpendpoint",
        view=STAFF,
        add=roles(DEV, SU),
        change=roles(DEV, SU),
        delete=roles(DEV, SU),
    ),
    **{
        f"admin:systems_{kind}_test_connection": Access(get=POST_ONLY, post=RESPONDERS)
        for kind in ("dockerengine", "postgresdatabase", "rediscache", "httpendpoint")
    },
    # All systems in one list; an object's page redirects to its kind's page.
    **model_pages("systems.system", view=STAFF, add=NOBODY, change=NOBODY, delete=roles(DEV, SU)),
    "admin:systems_system_change": Access(get=STAFF, ok=302, post=STAFF, post_ok=302),
    # --- people ----------------------------------------------------------------------------
    **model_pages("people.team", view=STAFF, add=roles(DEV, SU), change=roles(DEV, SU)),
    **model_pages("people.contact", view=STAFF, add=roles(DEV, SU), change=roles(DEV, SU)),
    **model_pages("people.oncallrotation", view=STAFF, add=roles(DEV, SU), change=roles(DEV, SU)),
    # Swaps and cover have pages of their own: On-call engineers record them there without
    # being able to change the rotation (whose page they may not save).
    **model_pages(
        "people.oncalloverride", view=STAFF, add=roles(OC, DEV, SU), change=roles(OC, DEV, SU)
    ),
    **model_pages("people.webhookchannel", view=STAFF, add=roles(DEV, SU), change=roles(DEV, SU)),
    # "Take this shift" records an override: those who may record overrides (the service
    # also needs them to be in the rotation; the matrix users are not, so theirs is refused
    # with a message after the permission check).
    "admin:people_oncallrotation_take_shift": Access(
        get=POST_ONLY, post=roles(OC, DEV, SU), refused=MESSAGE
    ),
    # One's own shifts and feed link (and resetting it): every staff user.
    "admin:people_oncallrotation_my_shifts": Access(get=STAFF, post=STAFF),
    **model_pages(
        "people.notification",
        view=STAFF,
        add=NOBODY,
        change=NOBODY,
        delete=NOBODY,
        actions={"retry_now": roles(OC, DEV, SU)},
    ),
    # --- health, operations, monitoring ------------------------------------------------------
    **model_pages("health.heartbeat", view=STAFF, add=NOBODY, change=NOBODY),
    # Cancelling a queued operation is offered to every role that may run some kind of
    # operation; the service then needs the permission to run the selected one's kind.
    **model_pages(
        "operations.operation",
        view=STAFF,
        add=NOBODY,
        delete=NOBODY,
        actions={"cancel_queued": RESPONDERS},
    ),
    **model_pages("operations.evidence", view=STAFF, add=NOBODY, change=NOBODY, delete=NOBODY),
    **model_pages(
        "monitoring.alertrule",
        view=STAFF,
        add=roles(DEV, SU),
        change=roles(OC, DEV, SU),
        delete=roles(DEV, SU),
    ),
    **model_pages(
        "monitoring.collectionschedule",
        view=STAFF,
        add=NOBODY,
        change=roles(DEV, SU),
        delete=roles(DEV, SU),
    ),
    **model_pages("monitoring.alertstate", view=STAFF, add=NOBODY, change=NOBODY),
    # --- the status page ---------------------------------------------------------------------
    # Components and their mapping to systems: DevOps. Subscribers sign up on the public page;
    # DevOps may delete one who asks (nobody edits them).
    **model_pages(
        "statuspage.component",
        view=STAFF,
        add=roles(DEV, SU),
        change=roles(DEV, SU),
        delete=roles(DEV, SU),
    ),
    **model_pages(
        "statuspage.subscriber", view=STAFF, add=NOBODY, change=NOBODY, delete=roles(DEV, SU)
    ),
    # --- incidents -------------------------------------------------------------------------
    # Anyone in a role may open an incident (Viewers too: they report what they see).
    **model_pages(
        "incidents.incident",
        view=STAFF,
        add=roles(VW, OC, DBA, DEV, SEC, SU),
        change=RESPONDERS,
    ),
    **{
        f"admin:incidents_incident_{name}": Access(get=POST_ONLY, post=RESPONDERS)
        for name in ("transition", "escalate", "mark_mitigated", "note", "step_done")
    },
    "admin:incidents_incident_attach_runbook": Access(
        get=POST_ONLY,
        post=RESPONDERS,
        post_data={"runbook": "<incidents.runbook>"},
    ),
    # The step restarts a container: the roles whose runbook steps restart containers.
    "admin:incidents_incident_step_run": Access(get=roles(OC, DEV, SU), post=roles(OC, DEV, SU)),
    # Hole 2 of issue 9: evidence is downloaded with view_evidence, which every role that
    # works incidents holds. Secure: the Security team (and superusers) only.
    "admin:incidents_incident_evidence": Access(get=roles(SEC, SU)),
    **model_pages("incidents.runbook", view=STAFF),
    # Publishing an incident on the status page and posting its public updates: whoever
    # works incidents.
    **model_pages("incidents.publicincident", view=STAFF, add=RESPONDERS, change=RESPONDERS),
    "admin:incidents_publicincident_post_update": Access(get=POST_ONLY, post=RESPONDERS),
    **model_pages("incidents.alert", view=STAFF, add=NOBODY, change=NOBODY),
    # Who is paged when: DevOps keep the teams and rotations, and the policies with them.
    **model_pages(
        "incidents.escalationpolicy",
        view=STAFF,
        add=roles(DEV, SU),
        change=roles(DEV, SU),
        delete=roles(DEV, SU),
    ),
    # What each escalation sent: written by the escalation service only.
    **model_pages("incidents.escalation", view=STAFF, add=NOBODY, change=NOBODY, delete=NOBODY),
    # --- backups -----------------------------------------------------------------------------
    **model_pages(
        "backups.backupplan",
        view=STAFF,
        add=roles(DBA, SU),
        change=roles(DBA, SU),
        actions={"back_up_now": roles(DBA, SU), "apply_retention": roles(DBA, SU)},
    ),
    **model_pages("backups.backup", view=STAFF, add=NOBODY, change=NOBODY, delete=NOBODY),
    "admin:backups_backup_verify": Access(get=POST_ONLY, post=roles(DBA, SU)),
    "admin:backups_backup_drill": Access(get=POST_ONLY, post=roles(DBA, SU)),
    "admin:backups_backup_restore": Access(get=roles(DBA, SU), post=roles(DBA, SU)),
    **model_pages("backups.restore", view=STAFF, add=NOBODY, change=NOBODY, delete=NOBODY),
    **model_pages("backups.restoredrill", view=STAFF, add=NOBODY, change=NOBODY, delete=NOBODY),
    # --- personal API tokens: every staff user makes and revokes their own ----------------
    # Nobody edits or deletes a token (revoking keeps it, for the history of what it did).
    **model_pages(
        "api.apitoken",
        view=STAFF,
        add=STAFF,
        change=NOBODY,
        delete=NOBODY,
        actions={"revoke_tokens": STAFF},
    ),
    # The world's token is the superuser's: to anyone else it does not exist (their list
    # shows only their own tokens), so its page sends them to the index. Saving any token's
    # page is refused to everyone (tests/api/test_tokens.py).
    "admin:api_apitoken_change": Access(get=ONLY_SUPERUSER, refused=302),
    "admin:api_apitoken_history": Access(get=ONLY_SUPERUSER, refused=302),
    # --- maintenance -------------------------------------------------------------------------
    **model_pages(
        "maintenance.maintenancewindow", view=STAFF, add=roles(DEV, SU), change=roles(DEV, SU)
    ),
    "admin:maintenance_maintenancewindow_month": Access(get=STAFF),
    # Each person's own calendar link and time zone.
    "admin:maintenance_maintenancewindow_subscribe": Access(get=STAFF, post=STAFF),
    # Each action's page, like its form, only to the roles that may perform it (DevOps
    # conducts windows and may cancel them); others are sent back to the window with the
    # permission named. An action that does not exist is not found.
    "admin:maintenance_maintenancewindow_action": {
        **{
            action: Access(get=roles(DEV, SU), post=roles(DEV, SU), refused=MESSAGE)
            for action in ("start", "complete", "rollback", "cancel", "log")
        },
        "no-such-action": Access(get=STAFF, ok=404, post=STAFF, post_ok=404),
    },
    "admin:maintenance_maintenancewindow_step": Access(
        get=POST_ONLY, post=roles(DEV, SU), refused=MESSAGE
    ),
    **model_pages(
        "maintenance.maintenanceplan", view=STAFF, add=roles(DEV, SU), change=roles(DEV, SU)
    ),
    **model_pages(
        "maintenance.recurringtask", view=STAFF, add=roles(SEC, SU), change=roles(SEC, SU)
    ),
    # Completing a due date is saving its page with notes: it needs complete_taskoccurrence
    # (the Security team), not change_taskoccurrence (no role).
    **model_pages(
        "maintenance.taskoccurrence",
        view=STAFF,
        add=NOBODY,
        change=roles(SEC, SU),
        change_post_data={"notes": "Checked by the role matrix."},
    ),
    "admin:maintenance_taskoccurrence_scan": Access(
        get=POST_ONLY, post=roles(SEC, SU), refused=MESSAGE
    ),
}
