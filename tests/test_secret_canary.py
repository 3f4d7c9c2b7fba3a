"""The canary sweep (issue 9): a stored secret reaches no page, export, payload or log line.

One system of each kind and two webhook channels are registered through the admin, as
users do, each with a distinctive secret (a "canary") that the real systems behind them
accept. Then, as every seeded role group and a superuser, every admin page that role can
reach for those objects is fetched (lists, change pages, history, delete confirmations,
the objects' custom views, audit records and the audit CSV), Test connection is run,
the scheduled checks run, a notification is delivered to a real webhook receiver and a
real SMTP server on loopback, /health/detailed and /metrics are read with their tokens,
and the configuration is exported to its Git repository. Every logger runs at DEBUG all
along. No canary may appear in any of it.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
from pathlib import Path

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection
from django.urls import reverse

from backups.services import configuration_backup
from opsportal.access import ROLE_PERMISSIONS
from opsportal.audit.models import AuditRecord
from opsportal.celery import app as celery_app
from opsportal.defaults import load_defaults
from opsportal.people.models import (
    Notification,
    NotificationStatus,
    Responsibility,
    Team,
    WebhookChannel,
)
from opsportal.people.services import notify
from opsportal.systems.fields import secret_field_names
from opsportal.systems.models import (
    DockerEngine,
    HttpEndpoint,
    PostgresDatabase,
    RedisCache,
    System,
)
from opsportal.systems.services import systems_check_due
from tests import realsystems
from tests.signin import TwoFactorClient as Client

pytestmark = pytest.mark.django_db

PG_CANARY = "canaryPgPassw0rdQ7x2"
REDIS_CANARY = "canaryRedisPassw0rdW3y8"
API_CANARY = "canaryApiT0kenE4z9"
WEBHOOK_CANARY = "canaryWebh00kT0kenR6t1"
DEAD_WEBHOOK_CANARY = "canaryDeadH00kT0kenY2u5"
HEALTH_TOKEN = "health-token-for-the-sweep"
METRICS_TOKEN = "metrics-token-for-the-sweep"
ROLES = [*ROLE_PERMISSIONS, "superuser"]


def tls_canaries(key_pem: str) -> list[str]:
    """The TLS key is real (the test engine must accept it): its base64 lines are the
    canaries, plus the longest letters-and-digits run, which survives any escaping."""
    lines = [line for line in key_pem.splitlines() if line and not line.startswith("-----")]
    runs = re.findall(r"[A-Za-z0-9]{20,}", "".join(lines))
    return [*lines, max(runs, key=len)]


@pytest.fixture
def smtp_server(settings):
    with realsystems.smtp_server() as server:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = (
            "127.0.0.1",
            server.port,
            5,
        )
        settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
        settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
        yield server


@pytest.fixture
def every_logger_at_debug(caplog):
    """Every logger that exists, and every one created later (it inherits the root's
    level), at DEBUG and reaching the captured records; SQL statements included."""
    loggers = [logging.getLogger()] + [
        logging.getLogger(name) for name in list(logging.root.manager.loggerDict)
    ]
    saved = [(lg, lg.level, lg.disabled) for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.DEBUG)
        lg.disabled = False
        if not lg.propagate:
            lg.addHandler(caplog.handler)
    connection.force_debug_cursor = True
    yield caplog
    connection.force_debug_cursor = False
    for lg, level, disabled in saved:
        lg.setLevel(level)
        lg.disabled = disabled
        if caplog.handler in lg.handlers and lg is not logging.getLogger():
            lg.removeHandler(caplog.handler)


def role_client(role: str) -> Client:
    users = get_user_model().objects
    if role == "superuser":
        user = users.create_superuser("sweep-root", "root@example.com", "pw-sweep-123!")
    else:
        user = users.create_user(
            f"sweep-{role.lower().replace(' ', '-')}", password="pw-sweep-123!", is_staff=True
        )
        user.groups.add(Group.objects.get(name=role))
    client = Client()
    client.force_login(user)
    return client


def common(name: str) -> dict:
    return {
        "name": name,
        "description": "",
        "critical": "on",
        "check_interval_seconds": "30",
        "container_name": "",
    }


def register_everything(superuser: Client, devops: Client, servers: dict) -> dict:
    """Through the admin's add pages, as users register them."""
    forms = {
        "postgresdatabase": {
            **common("sweep-pg"),
            "host": "127.0.0.1",
            "port": str(servers["postgres_port"]),
            "dbname": "postgres",
            "username": "postgres",
            "password": PG_CANARY,
            # The operator credential the database's operations and Test connection use: the
            # cluster's superuser, whose password is the same canary.
            "operator_username": "postgres",
            "operator_password": PG_CANARY,
            "sslmode": "prefer",
            "connect_timeout_seconds": "3",
        },
        "rediscache": {
            **common("sweep-redis"),
            "host": "127.0.0.1",
            "port": str(servers["redis_port"]),
            "db": "0",
            "username": "",
            "password": REDIS_CANARY,
            "timeout_seconds": "3",
        },
        "httpendpoint": {
            **common("sweep-api"),
            "url": servers["http"].url + "/health",
            "method": "GET",
            "expected_status": "200",
            "timeout_seconds": "3",
            "verify_tls": "on",
            "authorization_header": f"Bearer {API_CANARY}",
            "latency_target_ms": "500",
        },
        "dockerengine": {
            **common("sweep-engine"),
            "base_url": servers["tls"]["base_url"],
            "tls_verify": "on",
            "tls_ca_cert": servers["tls"]["tls_ca_cert"],
            "tls_client_cert": servers["tls"]["tls_client_cert"],
            "tls_client_key": servers["tls"]["tls_client_key"],
            "timeout_seconds": "10",
        },
    }
    for model, form in forms.items():
        added = superuser.post(f"/admin/systems/{model}/add/", form)
        assert added.status_code == 302, added.content.decode()[-3000:]
    on_call = Team.objects.get(responsibility=Responsibility.ON_CALL)
    for name, url in [
        ("sweep-chat", f"{servers['http'].url}/services/T9/B9/{WEBHOOK_CANARY}"),
        (
            "sweep-dead-chat",
            f"http://127.0.0.1:{realsystems.free_port()}/services/T8/B8/{DEAD_WEBHOOK_CANARY}",
        ),
    ]:
        added = devops.post(
            "/admin/people/webhookchannel/add/",
            {"name": name, "team": on_call.pk, "format": "slack", "url": url, "active": "on"},
        )
        assert added.status_code == 302, added.content.decode()[-3000:]
    on_call.email = "oncall@example.com"
    on_call.save()
    database = PostgresDatabase.objects.get(name="sweep-pg")
    assert (database.password, database.operator_password) == (PG_CANARY, PG_CANARY)
    return {
        "postgresdatabase": PostgresDatabase.objects.get(name="sweep-pg"),
        "rediscache": RedisCache.objects.get(name="sweep-redis"),
        "httpendpoint": HttpEndpoint.objects.get(name="sweep-api"),
        "dockerengine": DockerEngine.objects.get(name="sweep-engine"),
        "webhookchannel": WebhookChannel.objects.get(name="sweep-chat"),
        "dead_webhookchannel": WebhookChannel.objects.get(name="sweep-dead-chat"),
        "team": on_call,
    }


def object_urls(obj) -> list[str]:
    """Every admin URL of `obj`'s admin that names one object, for this object, plus the
    list and add pages: change, history, delete confirmation and the custom views."""
    model_admin = admin.site._registry[type(obj)]
    urls = []
    for pattern in model_admin.get_urls():
        if not pattern.name:
            continue
        route = str(pattern.pattern)
        params = re.findall(r"<(?:\w+:)?(\w+)>", route)
        if params == ["object_id"]:
            urls.append(reverse(f"admin:{pattern.name}", args=[obj.pk]))
        elif not params:
            urls.append(reverse(f"admin:{pattern.name}"))
    return urls


def fetch(client: Client, url: str, texts: list[str], *, method: str = "get") -> int:
    response = getattr(client, method)(url, follow=method == "post")
    if getattr(response, "streaming", False):
        texts.append(b"".join(response.streaming_content).decode())
    else:
        texts.append(response.content.decode())
    texts.append(str(dict(response.headers)))
    return response.status_code


def test_no_secret_reaches_any_page_export_payload_or_log(
    every_logger_at_debug,
    capfd,
    settings,
    tmp_path,
    tls_engine_material,
    smtp_server,
    django_capture_on_commit_callbacks,
):
    caplog = every_logger_at_debug
    settings.HEALTH_TOKEN, settings.METRICS_TOKEN = HEALTH_TOKEN, METRICS_TOKEN
    settings.NOTIFICATION_MAX_ATTEMPTS = 1
    settings.NOTIFICATION_WEBHOOK_TIMEOUT = 3
    canaries = [
        PG_CANARY,
        REDIS_CANARY,
        API_CANARY,
        WEBHOOK_CANARY,
        DEAD_WEBHOOK_CANARY,
        *tls_canaries(tls_engine_material["tls_client_key"]),
    ]
    texts: list[str] = []  # everything the portal showed, sent, exported or logged
    load_defaults()
    clients = {role: role_client(role) for role in ROLES}

    with (
        realsystems.password_postgres(PG_CANARY) as postgres_port,
        realsystems.password_redis(REDIS_CANARY) as redis_port,
        realsystems.http_server() as http,
    ):
        servers = {
            "postgres_port": postgres_port,
            "redis_port": redis_port,
            "http": http,
            "tls": tls_engine_material,
        }
        holders = register_everything(clients["superuser"], clients["DevOps"], servers)

        # The secrets are stored and work: every system answers with them.
        for kind in ("postgresdatabase", "rediscache", "httpendpoint", "dockerengine"):
            system = holders[kind]
            url = f"/admin/systems/{kind}/{system.pk}/test-connection/"
            page = clients["superuser"].post(url, follow=True).content.decode()
            texts.append(page)
            assert "Connection OK" in page, (kind, page[-2000:])
        assert http.requests[-1][1]["Authorization"] == f"Bearer {API_CANARY}"

        # The scheduled checks, as the worker runs them.
        System.objects.update(last_checked_at=None)
        assert systems_check_due() == 4

        # A page to the on-call team: its mail, its chat webhook, its dead webhook.
        celery_app.conf.task_always_eager = True
        try:
            with django_capture_on_commit_callbacks(execute=True):
                created = notify(
                    responsibility=Responsibility.ON_CALL,
                    subject="Sweep: API latency high",
                    body="P95 above target on sweep-api",
                )
        finally:
            celery_app.conf.task_always_eager = False
        statuses = {
            n.webhook.name if n.webhook else n.recipient: n.status
            for n in Notification.objects.filter(pk__in=[n.pk for n in created])
        }
        assert statuses == {
            "oncall@example.com": NotificationStatus.SENT,
            "sweep-chat": NotificationStatus.SENT,
            "sweep-dead-chat": NotificationStatus.FAILED,
        }
        [mail] = smtp_server.messages
        texts.append(mail["data"])
        [(hook_path, hook_headers, hook_body)] = [r for r in http.requests if len(r) == 3]
        assert hook_path.endswith(WEBHOOK_CANARY)  # delivered to the secret URL...
        texts.append(str(hook_headers))  # ...but nothing it carries quotes it
        texts.append(hook_body.decode())
        assert "Sweep: API latency high" in hook_body.decode()

        # Every page each role can reach for these objects.
        notifications = list(Notification.objects.filter(pk__in=[n.pk for n in created]))
        records = list(
            AuditRecord.objects.filter(
                object_type__in=[
                    "systems.postgresdatabase",
                    "systems.rediscache",
                    "systems.httpendpoint",
                    "systems.dockerengine",
                    "people.webhookchannel",
                    "people.notification",
                ]
            )
        )
        assert len(records) >= 10
        reached = {role: 0 for role in ROLES}
        for role, client in clients.items():
            user = get_user_model().objects.get(pk=client.session["_auth_user_id"])
            urls = ["/admin/", reverse("admin:audit_auditrecord_export")]
            for model, model_admin in admin.site._registry.items():
                opts = model._meta
                urls.append(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
                for field in model_admin.autocomplete_fields:
                    urls.append(
                        f"/admin/autocomplete/?app_label={opts.app_label}"
                        f"&model_name={opts.model_name}&field_name={field}"
                    )
            for obj in [*holders.values(), *notifications]:
                urls += object_urls(obj)
                if isinstance(obj, System):  # the all-systems list's link to it
                    urls.append(reverse("admin:systems_system_change", args=[obj.pk]))
            urls += [reverse("admin:audit_auditrecord_change", args=[r.pk]) for r in records] + [
                reverse("admin:audit_auditrecord_changelist") + f"?q={name}"
                for name in ("sweep-pg", "sweep-chat", "sweep-engine")
            ]
            for url in dict.fromkeys(urls):
                if fetch(client, url, texts) == 200:
                    reached[role] += 1
            if user.has_perm("systems.test_connection"):
                for kind in ("postgresdatabase", "rediscache", "httpendpoint", "dockerengine"):
                    url = f"/admin/systems/{kind}/{holders[kind].pk}/test-connection/"
                    assert fetch(client, url, texts, method="post") == 200
        # Each role read the pages of every kind of object (not a wall of 403s).
        for role, count in reached.items():
            assert count >= 60, (role, count)

        # The feeds: detailed health with its token (a live check of every system),
        # the metrics with theirs.
        anonymous = Client()
        health = anonymous.get(
            "/health/detailed", HTTP_AUTHORIZATION=f"Bearer {HEALTH_TOKEN}"
        ).content.decode()
        assert "sweep-pg" in health
        texts.append(health)
        metrics = anonymous.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {METRICS_TOKEN}")
        assert metrics.status_code == 200
        texts.append(metrics.content.decode())

        # The configuration export, through its service, into its Git repository.
        repository = tmp_path / "config-repo"
        configuration_backup(directory=repository, message="sweep")
        exported = [
            p.read_text(errors="replace")
            for p in Path(repository).rglob("*")
            if p.is_file() and ".git" not in p.parts
        ]
        assert any("sweep-pg" in text for text in exported)
        texts += exported
        texts.append(
            subprocess.run(
                ["git", "-C", str(repository), "log", "-p", "--all"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )

    # What the portal stored about all this: audit records, notification rows.
    texts.append(json.dumps([_row(r) for r in AuditRecord.objects.all()], default=str))
    texts.append(json.dumps([_row(n) for n in Notification.objects.all()], default=str))
    texts.append(str([(str(h), repr(h)) for h in holders.values()]))

    # The logs of the whole run, and whatever reached the terminal.
    out, err = capfd.readouterr()
    logged = caplog.text + "\n".join(str(r.__dict__) for r in caplog.records)
    assert "Starting new HTTP connection" in logged  # urllib3 at DEBUG was captured
    assert "systems_postgresdatabase" in logged  # and the SQL statements
    sources = {
        "pages, exports and payloads": "\n".join(texts),
        "logs": logged,
        "terminal": out + err,
    }
    leaks = [
        (where, canary, text[max(0, text.find(canary) - 200) : text.find(canary) + 100])
        for canary in canaries
        for where, text in sources.items()
        if canary in text
    ]
    assert leaks == []


def _row(obj) -> dict:
    """A row's stored values as they are in the database, secrets excluded (they are
    encrypted at rest; the sweep is about what is shown, sent and logged)."""
    secrets = set(secret_field_names(type(obj)))
    return {
        f.attname: getattr(obj, f.attname)
        for f in obj._meta.concrete_fields
        if f.name not in secrets
    }
