"""The restore confirmation asks for the registered system's unique name, not the database
name (production and staging often share the database name)."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from backups import services
from backups.models import Restore
from opsportal.audit.models import AuditRecord
from opsportal.defaults import load_defaults
from tests.previewing import post_confirmed

pytestmark = pytest.mark.django_db


def test_typing_the_database_name_is_refused_and_the_system_name_proceeds(
    client, source_database, second_database
):
    load_defaults()
    dba = get_user_model().objects.create_user("dora-dba", password="dba-pass-123", is_staff=True)
    dba.groups.add(Group.objects.get(name="Database admins"))
    client.force_login(dba)
    backup = services.backup_run_now(database=source_database, reason="for the restore test")
    url = f"/admin/backups/backup/{backup.pk}/restore/"
    assert second_database.name != second_database.dbname

    form = {"target": second_database.pk, "reason": "refresh the reporting copy"}
    response = client.post(url, {**form, "confirmation": second_database.dbname})
    assert response.status_code == 200
    assert "Type the target system&#x27;s name to confirm" in response.content.decode()
    assert (
        f"Type the name of the system you restore into, {second_database.name!r}"
        in response.context["form"].non_field_errors()[0]
    )
    assert not Restore.objects.exists()
    assert not AuditRecord.objects.filter(object_type="backups.restore").exists()

    response = post_confirmed(client, url, {**form, "confirmation": f" {second_database.name} "})
    assert response.status_code == 302, response.content.decode()[:2000]
    restore = Restore.objects.get()
    assert restore.target_id == second_database.pk and restore.backup_id == backup.pk
    assert restore.requested_by_id == dba.pk
    assert AuditRecord.objects.filter(
        object_type="backups.restore", object_id=str(restore.pk), outcome="requested"
    ).exists()


def test_the_service_refuses_the_database_name_too(source_database, second_database, superuser):
    from django.core.exceptions import ValidationError

    backup = services.backup_run_now(database=source_database, reason="for the restore test")
    with pytest.raises(ValidationError, match="not its database name"):
        services.restore_request(
            backup=backup,
            target=second_database,
            actor=superuser,
            reason="refresh",
            confirmation=second_database.dbname,
        )
    assert not Restore.objects.exists()
