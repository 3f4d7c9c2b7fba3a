"""Trigram indexes for the incident changelist's search (title, symptoms).

The admin searches with `icontains`, i.e. `UPPER(column::text) LIKE UPPER('%term%')`, which no
B-tree index can answer: with 100,000 incidents each search scanned the table (bench p95
~390 ms). A GIN index over the same UPPER(...) expression with pg_trgm's operator class lets
PostgreSQL answer the LIKE from the index. PostgreSQL only: on SQLite (the development
default) the migration does nothing and search keeps working as before, just unindexed.

Built CONCURRENTLY (so the migration is not atomic) so an upgrade during an incident does not
block writes to the incidents table while the index builds.
"""

from django.db import migrations

INDEXES = {
    "incidents_incident_title_trgm": "UPPER(title::text)",
    "incidents_incident_symptoms_trgm": "UPPER(symptoms::text)",
}


def create_trigram_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for name, expression in INDEXES.items():
        schema_editor.execute(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} "
            f"ON incidents_incident USING gin ({expression} gin_trgm_ops)"
        )


def drop_trigram_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in INDEXES:
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("incidents", "0002_initial"),
    ]

    operations = [
        migrations.RunPython(create_trigram_indexes, drop_trigram_indexes, elidable=False),
    ]
