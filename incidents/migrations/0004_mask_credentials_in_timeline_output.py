"""Timeline events copy an operation's output; those written before output was masked by
value (issue 9) may hold credentials: mask them in place. Only rows that change are written."""

from django.db import migrations


def mask_timeline_output(apps, schema_editor):
    from opsportal.operations.masking import mask_credentials

    TimelineEvent = apps.get_model("incidents", "TimelineEvent")
    rows = TimelineEvent.objects.exclude(output="").only("pk", "output").order_by("pk")
    for row in rows.iterator(chunk_size=500):
        masked = mask_credentials(row.output)
        if masked != row.output:
            TimelineEvent.objects.filter(pk=row.pk).update(output=masked)


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0003_search_trigram_indexes"),
    ]

    operations = [migrations.RunPython(mask_timeline_output, migrations.RunPython.noop)]
