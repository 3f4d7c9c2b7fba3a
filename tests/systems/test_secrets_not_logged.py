"""Secrets typed into the admin never come back: not in a response, not in a log line."""

import logging

import pytest

from opsportal.audit.models import AuditRecord
from opsportal.systems.models import HttpEndpoint, PostgresDatabase, RedisCache, System
from opsportal.systems.services import systems_check_due
from tests import realsystems

pytestmark = pytest.mark.django_db

PG_SECRET = "pg-Log-Secret-1"
REDIS_SECRET = "redis-Log-Secret-2"
API_SECRET = "Bearer api-Log-Secret-3"
SECRETS = [PG_SECRET, REDIS_SECRET, API_SECRET.split()[1]]

COMMON = {"description": "", "critical": "on", "check_interval_seconds": "30"}


def test_wrong_secrets_fail_loudly_but_never_reach_a_log_or_a_page(
    staff_client, caplog, capfd, password_postgres_port, password_redis_port, http_server
):
    http_server.behaviour.status = 401
    forms = {
        "postgresdatabase": {
            **COMMON,
            "name": "pg-logged",
            "host": "127.0.0.1",
            "port": str(password_postgres_port),
            "dbname": "postgres",
            "username": "postgres",
            "password": PG_SECRET,
            "sslmode": "prefer",
            "connect_timeout_seconds": "3",
            "container_name": "",
        },
        "rediscache": {
            **COMMON,
            "name": "redis-logged",
            "host": "127.0.0.1",
            "port": str(password_redis_port),
            "db": "0",
            "username": "",
            "password": REDIS_SECRET,
            "timeout_seconds": "3",
            "container_name": "",
        },
        "httpendpoint": {
            **COMMON,
            "name": "api-logged",
            "url": http_server.url + "/health",
            "method": "GET",
            "expected_status": "200",
            "timeout_seconds": "2",
            "verify_tls": "on",
            "authorization_header": API_SECRET,
            "latency_target_ms": "500",
            "container_name": "",
        },
    }
    pages = []
    # Everything at DEBUG, the libraries' loggers included (psycopg, redis, urllib3, celery).
    with caplog.at_level(logging.DEBUG):
        for model, form in forms.items():
            added = staff_client.post(f"/admin/systems/{model}/add/", form)
            assert added.status_code == 302, added.content.decode()[:2000]
        systems = [
            PostgresDatabase.objects.get(name="pg-logged"),
            RedisCache.objects.get(name="redis-logged"),
            HttpEndpoint.objects.get(name="api-logged"),
        ]
        assert systems[0].password == PG_SECRET  # stored, so the failure is the server's refusal
        for system in systems:
            model = system._meta.model_name
            pages.append(staff_client.get(f"/admin/systems/{model}/{system.pk}/change/"))
            pages.append(
                staff_client.post(
                    f"/admin/systems/{model}/{system.pk}/test-connection/", follow=True
                )
            )
        # The scheduled check too, as the worker runs it (Test connection just stored a check).
        System.objects.update(last_checked_at=None)
        assert systems_check_due() == 3
        pages.append(staff_client.get("/admin/audit/auditrecord/"))
        pages.append(staff_client.get("/admin/systems/system/"))

    text = "".join(page.content.decode() for page in pages)
    # The refusals are reported in words...
    assert "rejected the password" in text
    assert "Connection failed" in text
    assert "answered HTTP 401" in text
    assert PostgresDatabase.objects.get(name="pg-logged").last_check_ok is False
    assert HttpEndpoint.objects.get(name="api-logged").last_check_ok is False
    # ...and logging did capture something, so the check below is not vacuous.
    assert caplog.records
    out, err = capfd.readouterr()
    audited = [(r.object_repr, r.message, r.changes) for r in AuditRecord.objects.all()]
    assert len(audited) >= 6  # three creations, three Test connection results
    for secret in SECRETS:
        assert secret not in str(audited)
        assert secret not in text
        assert secret not in caplog.text
        assert secret not in out + err


def test_a_closed_port_message_does_not_carry_the_password(db, caplog):
    database = PostgresDatabase.objects.create(
        name="pg-closed",
        host="127.0.0.1",
        port=realsystems.free_port(),
        dbname="postgres",
        password=PG_SECRET,
        connect_timeout_seconds=2,
    )
    with caplog.at_level(logging.DEBUG):
        systems_check_due()
    database.refresh_from_db()
    assert database.last_check_ok is False
    assert "not reachable" in database.last_check_message
    assert PG_SECRET not in database.last_check_message
    assert PG_SECRET not in caplog.text
