"""On PostgreSQL, the raw sample table becomes partitioned by day (see
opsportal/monitoring/partitions.py); every row is kept, with its id. SQLite keeps the plain
table. Reversible: going back copies every row into one plain table again. The model does
not change: Django still knows `id` as the key; the database's key is (id, at)."""

import datetime as dt

from django.db import migrations

from opsportal.monitoring import partitions


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        if partitions.is_partitioned(cursor):
            return
        partitions.convert_to_partitioned(
            cursor, today=dt.datetime.now(dt.UTC).date(), days_ahead=partitions.DAYS_AHEAD
        )


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        if partitions.is_partitioned(cursor):
            partitions.convert_to_plain(cursor)


class Migration(migrations.Migration):
    dependencies = [
        ("monitoring", "0003_alert_keep_firing_for"),
    ]

    operations = [migrations.RunPython(forwards, backwards, elidable=False)]
