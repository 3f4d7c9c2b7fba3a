"""The objects the role matrix fills every URL with (one of every model, systems pointing at
closed local ports), built once per module in a transaction rolled back at the end."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path

from django.contrib.auth import get_user_model, login
from django.contrib.auth.models import Group
from django.contrib.sessions.middleware import SessionMiddleware
from django.test import Client, RequestFactory
from django.utils import timezone

from opsportal.approvals.models import ApprovalPolicy, ApprovalRequest
from opsportal.defaults import load_defaults
from tests import realsystems
from tests.role_matrix_table import (
    ANONYMOUS,
    GROUPS,
    SUPERUSER,
    VIEWERS,
)

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

    # An alert rule fires on the database being down: alert state, alert and incident. Its
    # engine (a closed port) does not answer either, so monitoring would hold the database's
    # alert for the engine's own (one page per root cause, issue 14): the world wants the
    # database's own incident, so the alert is evaluated as for a database on no engine.
    PostgresDatabase.objects.filter(pk=database.pk).update(docker_engine=None)
    alerts_evaluate(
        values={(database.pk, "up", ""): (0.0, timezone.now())}, systems={database.pk: database}
    )
    PostgresDatabase.objects.filter(pk=database.pk).update(docker_engine=engine)
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
        # Restores need a second person's approval by default (issue 14): root's waits.
        "approvals.approvalrequest": ApprovalRequest.objects.get(subject_id=restore.pk),
        "approvals.approvalpolicy": ApprovalPolicy.objects.get(subject="restore"),
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
