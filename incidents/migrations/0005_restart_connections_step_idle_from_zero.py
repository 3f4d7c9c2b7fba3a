from django.db import migrations

RUNBOOK = "Database Connection Issues"
STEP = "Restart database connections"


def idle_from_zero(apps, schema_editor):
    """The runbook's step as first loaded terminated connections idle for over 300 s, which
    a leaking pool's just-opened connections never are (issue 16): from 0 s now. A step an
    operator edited is left as they made it."""
    RunbookStep = apps.get_model("incidents", "RunbookStep")
    RunbookStep.objects.filter(
        runbook__name=RUNBOOK,
        text=STEP,
        operation_kind="db_terminate_idle",
        operation_params={"idle_seconds": 300},
    ).update(operation_params={"idle_seconds": 0})


def idle_from_300(apps, schema_editor):
    RunbookStep = apps.get_model("incidents", "RunbookStep")
    RunbookStep.objects.filter(
        runbook__name=RUNBOOK,
        text=STEP,
        operation_kind="db_terminate_idle",
        operation_params={"idle_seconds": 0},
    ).update(operation_params={"idle_seconds": 300})


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0004_mask_credentials_in_timeline_output"),
    ]

    operations = [migrations.RunPython(idle_from_zero, idle_from_300)]
