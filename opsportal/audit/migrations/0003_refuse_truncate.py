from django.db import migrations

# TRUNCATE fires no row trigger, so 0002's guard did not stop it: refuse it with a statement
# trigger (same function, TG_OP names the refused statement). Only a superuser can get past
# it (session_replication_role = replica), which is how the test suite empties its tables.
CREATE = """
CREATE TRIGGER audit_record_no_truncate
    BEFORE TRUNCATE ON audit_auditrecord
    FOR EACH STATEMENT EXECUTE FUNCTION audit_record_append_only();
"""
DROP = "DROP TRIGGER IF EXISTS audit_record_no_truncate ON audit_auditrecord;"


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_append_only_trigger")]
    operations = [migrations.RunPython(create, drop)]
