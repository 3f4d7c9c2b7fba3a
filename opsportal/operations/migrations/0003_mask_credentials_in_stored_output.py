"""Operations recorded before output was masked by value (issue 9) may hold credentials in
their output, error or result: mask them in place. Only rows that change are written."""

from django.db import migrations


def mask_stored_output(apps, schema_editor):
    from opsportal.operations.masking import mask_credentials, mask_structure

    Operation = apps.get_model("operations", "Operation")
    rows = Operation.objects.only("pk", "output", "error", "result").order_by("pk")
    for row in rows.iterator(chunk_size=500):
        masked = {
            "output": mask_credentials(row.output),
            "error": mask_credentials(row.error),
            "result": mask_structure(row.result or {}),
        }
        if masked != {"output": row.output, "error": row.error, "result": row.result or {}}:
            Operation.objects.filter(pk=row.pk).update(**masked)


class Migration(migrations.Migration):
    dependencies = [
        ("operations", "0002_download_evidence_and_operate_any_system_permissions"),
    ]

    operations = [migrations.RunPython(mask_stored_output, migrations.RunPython.noop)]
