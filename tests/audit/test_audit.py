"""The audit history: recorded for admin changes and operations, append-only, chained."""

import csv
import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction
from django.db.utils import DatabaseError

from opsportal.audit.models import AuditRecord
from opsportal.audit.services import audit_verify_chain
from opsportal.systems.models import RedisCache
from opsportal.systems.services import system_test_connection
from tests import realsystems

pytestmark = pytest.mark.django_db

ADD_URL = "/admin/systems/rediscache/add/"


def redis_form(**overrides) -> dict:
    return {
        "name": "cache-main",
        "description": "",
        "critical": "on",
        "check_interval_seconds": "30",
        "host": "127.0.0.1",
        "port": "6379",
        "db": "3",
        "username": "",
        "password": "",
        "timeout_seconds": "3",
        "container_name": "",
        **overrides,
    }


def records_for(obj) -> list[AuditRecord]:
    return list(
        AuditRecord.objects.filter(
            object_type=obj._meta.label_lower, object_id=str(obj.pk)
        ).order_by("id")
    )


def test_admin_create_change_delete_are_recorded_with_secrets_masked(staff_client, superuser):
    response = staff_client.post(ADD_URL, redis_form(password="first-Secret-value"))
    assert response.status_code == 302, response.content.decode()[:2000]
    cache = RedisCache.objects.get(name="cache-main")
    assert cache.password == "first-Secret-value"

    staff_client.post(
        f"/admin/systems/rediscache/{cache.pk}/change/",
        redis_form(db="4", password="second-Secret-value"),
    )
    deleted = staff_client.post(f"/admin/systems/rediscache/{cache.pk}/delete/", {"post": "yes"})
    assert deleted.status_code == 302, deleted.content.decode()[:3000]
    assert not RedisCache.objects.filter(pk=cache.pk).exists()

    created, changed, deleted = records_for(cache)
    assert [created.action, changed.action, deleted.action] == ["create", "change", "delete"]
    for record in (created, changed, deleted):
        assert record.actor_id == superuser.pk
        assert record.actor_name == "root"
        assert record.source == "admin"
        assert record.remote_addr == "127.0.0.1"
    assert created.changes["host"] == [None, "127.0.0.1"]
    assert changed.changes["db"] == [3, 4]
    assert changed.changes["password"] == ["********", "******** (changed)"]
    everything = str([r.changes for r in AuditRecord.objects.all()])
    assert "Secret-value" not in everything


def test_operations_are_recorded_with_their_outcome(redis_target):
    system_test_connection(system=redis_target)
    RedisCache.objects.filter(pk=redis_target.pk).update(port=realsystems.free_port())
    system_test_connection(system=RedisCache.objects.get(pk=redis_target.pk))
    ok, failed = [r for r in records_for(redis_target) if r.action == "operation"]
    assert ok.outcome == "success" and ok.message.startswith("Test connection: Redis")
    assert failed.outcome == "failure" and "not reachable" in failed.message


def test_chain_is_intact_after_normal_use(staff_client):
    staff_client.post(ADD_URL, redis_form())
    checked, chain_break = audit_verify_chain()
    assert checked >= 2
    assert chain_break is None
    out = io.StringIO()
    call_command("verify_audit", stdout=out)
    assert "Audit chain intact" in out.getvalue()


def _tamper(sql: str, params: list) -> None:
    # What someone with direct database access could do: switch the guard off and edit.
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditrecord DISABLE TRIGGER audit_record_append_only")
        cursor.execute(sql, params)
        cursor.execute("ALTER TABLE audit_auditrecord ENABLE TRIGGER audit_record_append_only")


def test_verify_detects_an_edited_record(staff_client):
    for name in ("a", "b", "c"):
        staff_client.post(ADD_URL, redis_form(name=f"cache-{name}"))
    victim = AuditRecord.objects.order_by("id")[1]
    _tamper("UPDATE audit_auditrecord SET message = %s WHERE id = %s", ["edited", victim.pk])
    _, chain_break = audit_verify_chain()
    assert chain_break.record_id == victim.pk
    assert "contents do not match" in chain_break.reason
    with pytest.raises(CommandError, match=f"broken at record {victim.pk}"):
        call_command("verify_audit")


def test_verify_detects_a_removed_record(staff_client):
    for name in ("a", "b", "c"):
        staff_client.post(ADD_URL, redis_form(name=f"cache-{name}"))
    removed, following = AuditRecord.objects.order_by("id")[1:3]
    _tamper("DELETE FROM audit_auditrecord WHERE id = %s", [removed.pk])
    _, chain_break = audit_verify_chain()
    assert chain_break.record_id == following.pk
    assert "predecessor" in chain_break.reason


def test_database_refuses_to_change_audit_records(staff_client):
    staff_client.post(ADD_URL, redis_form())
    record = AuditRecord.objects.first()
    for sql in (
        "UPDATE audit_auditrecord SET message = 'x' WHERE id = %s",
        "DELETE FROM audit_auditrecord WHERE id = %s",
    ):
        with (
            pytest.raises(DatabaseError, match="append-only"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(sql, [record.pk])


def test_orm_refuses_to_change_audit_records(staff_client):
    staff_client.post(ADD_URL, redis_form())
    record = AuditRecord.objects.first()
    with pytest.raises(PermissionError):
        AuditRecord.objects.filter(pk=record.pk).update(message="x")
    with pytest.raises(PermissionError):
        AuditRecord.objects.all().delete()
    with pytest.raises(PermissionError):
        record.save()
    with pytest.raises(PermissionError):
        record.delete()


def test_admin_cannot_edit_or_delete_audit_records_even_as_superuser(staff_client):
    staff_client.post(ADD_URL, redis_form())
    record = AuditRecord.objects.first()
    page = staff_client.get(f"/admin/audit/auditrecord/{record.pk}/change/")
    assert page.status_code == 200
    assert b'name="_save"' not in page.content
    assert (
        staff_client.post(
            f"/admin/audit/auditrecord/{record.pk}/delete/", {"post": "yes"}
        ).status_code
        == 403
    )
    assert staff_client.get("/admin/audit/auditrecord/add/").status_code == 403
    assert AuditRecord.objects.filter(pk=record.pk).exists()


def test_changelist_filters_and_csv_export(staff_client):
    staff_client.post(ADD_URL, redis_form(name="cache-x"))
    staff_client.post(ADD_URL, redis_form(name="cache-y"))
    listing = staff_client.get("/admin/audit/auditrecord/", {"q": "cache-x"})
    assert listing.status_code == 200
    shown = {record.object_repr for record in listing.context["cl"].result_list}
    assert shown == {"cache-x"}
    export = staff_client.get(
        "/admin/audit/auditrecord/export.csv",
        {"object_type": "systems.rediscache", "action__exact": "create"},
    )
    assert export.status_code == 200
    rows = list(csv.DictReader(io.StringIO(b"".join(export.streaming_content).decode())))
    assert sorted(r["object_repr"] for r in rows) == ["cache-x", "cache-y"]
    assert all(r["actor_name"] == "root" for r in rows)


def test_logins_are_recorded(client, superuser):
    client.post("/admin/login/", {"username": "root", "password": "wrong-password"})
    client.post("/admin/login/", {"username": "root", "password": "pw-root-123!"})
    actions = list(AuditRecord.objects.order_by("id").values_list("action", "outcome"))
    assert ("login_failed", "failure") in actions
    assert ("login", "success") in actions


def test_changelist_filters_by_person_object_and_date_range(staff_client, superuser):
    import datetime as dt

    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from tests.signin import TwoFactorClient

    other = get_user_model().objects.create_superuser("dba", "dba@example.com", "pw-dba-123!")
    client = TwoFactorClient()  # a second browser: staff_client stays logged in as root
    client.force_login(other)
    staff_client.post(ADD_URL, redis_form(name="cache-root"))
    client.post(ADD_URL, redis_form(name="cache-dba"))
    mine = RedisCache.objects.get(name="cache-dba")
    client.post(
        f"/admin/systems/rediscache/{mine.pk}/change/", redis_form(name="cache-dba", db="5")
    )

    def shown(**params) -> list[tuple[str, str]]:
        listing = staff_client.get("/admin/audit/auditrecord/", params)
        assert listing.status_code == 200, listing.content.decode()[:500]
        return sorted((r.actor_name, r.object_repr) for r in listing.context["cl"].result_list)

    by_person = shown(actor__id__exact=other.pk)
    assert by_person and {name for name, _ in by_person} == {"dba"}
    assert ("root", "cache-root") not in by_person

    by_object = shown(object_type="systems.rediscache", object_id=str(mine.pk))
    assert by_object == [("dba", "cache-dba"), ("dba", "cache-dba")]

    today = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    tomorrow = today + dt.timedelta(days=1)
    in_range = shown(at__gte=today.isoformat(), at__lt=tomorrow.isoformat())
    assert ("root", "cache-root") in in_range and ("dba", "cache-dba") in in_range
    last_week = shown(at__gte=(today - dt.timedelta(days=7)).isoformat(), at__lt=today.isoformat())
    assert last_week == []

    export = staff_client.get("/admin/audit/auditrecord/export.csv", {"actor__id__exact": other.pk})
    rows = list(csv.DictReader(io.StringIO(b"".join(export.streaming_content).decode())))
    assert rows and {r["actor_name"] for r in rows} == {"dba"}
