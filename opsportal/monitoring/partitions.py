"""The raw sample table partitioned by day on PostgreSQL: plain SQL over a cursor, shared by
the migration that converts the table and by the services that prepare days ahead and drop
days past retention. No model imports, so the migration can use it as it stands.

Layout: `monitoring_sample` is `PARTITION BY RANGE (at)`, one partition per UTC day named
`monitoring_sample_pYYYYMMDD`, and a default partition `monitoring_sample_default` that
catches a row for a day without its partition (the beat was down for a week, a clock far
off), so no sample is ever refused. The default partition is normally empty: preparing the
days moves any rows it holds into their day's new partition. The primary key is (id, at),
as PostgreSQL requires the partition key in it; ids still come from one sequence, so Django,
which knows `id` as the key, keeps working."""

# ruff: noqa: S608 -- every table name here is one of this module's constants or a name built
# from a date (partition_name); values go as parameters.
from __future__ import annotations

import datetime as dt
import re

PARENT = "monitoring_sample"
# Days prepared ahead of today: a beat that stops for up to a week still finds them.
DAYS_AHEAD = 7
DEFAULT = "monitoring_sample_default"
_NAME = re.compile(r"^monitoring_sample_p(\d{8})$")


def partition_name(day: dt.date) -> str:
    return f"{PARENT}_p{day:%Y%m%d}"


def _bounds(day: dt.date) -> tuple[str, str]:
    start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    return start.isoformat(), (start + dt.timedelta(days=1)).isoformat()


def is_partitioned(cursor) -> bool:
    cursor.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_partitioned_table WHERE partrelid = %s::regclass)",
        [PARENT],
    )
    return bool(cursor.fetchone()[0])


def partition_days(cursor) -> dict[dt.date, str]:
    """The day partitions that exist now (the default partition is not one of them)."""
    cursor.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = %s::regclass",
        [PARENT],
    )
    days = {}
    for (name,) in cursor.fetchall():
        if match := _NAME.match(name):
            days[dt.datetime.strptime(match.group(1), "%Y%m%d").date()] = name
    return days


def default_days(cursor) -> set[dt.date]:
    """The UTC days of the rows waiting in the default partition (normally none)."""
    cursor.execute(f"SELECT DISTINCT (at AT TIME ZONE 'UTC')::date FROM {DEFAULT}")
    return {row[0] for row in cursor.fetchall()}


def partition_create(cursor, day: dt.date, *, lock_timeout_ms: int = 5000) -> None:
    """Create the day's partition, moving the day's rows out of the default partition into
    it (PostgreSQL refuses the partition while the default holds rows it would own). Run in a
    transaction: the parent is locked for the few milliseconds this takes."""
    start, end = _bounds(day)
    name = partition_name(day)
    cursor.execute(f"SET LOCAL lock_timeout = {int(lock_timeout_ms)}")
    cursor.execute(f"LOCK TABLE {PARENT} IN ACCESS EXCLUSIVE MODE")
    cursor.execute(f"CREATE TEMP TABLE monitoring_sample_strays (LIKE {DEFAULT}) ON COMMIT DROP")
    cursor.execute(
        f"WITH moved AS (DELETE FROM {DEFAULT} WHERE at >= %s AND at < %s RETURNING *) "
        "INSERT INTO monitoring_sample_strays SELECT * FROM moved",
        [start, end],
    )
    cursor.execute(
        f"CREATE TABLE {name} PARTITION OF {PARENT} FOR VALUES FROM (%s) TO (%s)", [start, end]
    )
    cursor.execute(f"INSERT INTO {PARENT} SELECT * FROM monitoring_sample_strays")
    cursor.execute("DROP TABLE monitoring_sample_strays")


def partition_fold(cursor, name: str, *, rollup_seconds: int) -> int:
    """Fold a whole day's samples into rollups, one statement; returns how many."""
    cursor.execute(
        "WITH folded AS ("
        " INSERT INTO monitoring_samplerollup"
        " (system_id, metric, subject, bucket, mean, minimum, maximum, count)"
        " SELECT system_id, metric, subject,"
        " date_bin(make_interval(secs => %s), at, TIMESTAMPTZ '1970-01-01 00:00:00+00'),"
        f" avg(value), min(value), max(value), count(*) FROM {name}"
        " GROUP BY 1, 2, 3, 4 RETURNING count)"
        " SELECT coalesce(sum(count), 0) FROM folded",
        [rollup_seconds],
    )
    return int(cursor.fetchone()[0])


def partition_drop(cursor, name: str, *, lock_timeout_ms: int | None = None) -> None:
    """Detach and drop a day: no row-by-row DELETE, no dead tuples, no vacuum. Detaching
    locks the whole table for a moment; with `lock_timeout_ms` it gives up (PostgreSQL's
    lock_not_available) rather than queue the collectors' inserts behind a long read."""
    # Samples written earlier in the same transaction have their (deferred) foreign key
    # checks pending; PostgreSQL drops no table with pending checks, so run them now.
    cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    if lock_timeout_ms is not None:
        cursor.execute(f"SET LOCAL lock_timeout = {int(lock_timeout_ms)}")
    cursor.execute(f"ALTER TABLE {PARENT} DETACH PARTITION {name}")
    cursor.execute(f"DROP TABLE {name}")
    if lock_timeout_ms is not None:
        cursor.execute("SET LOCAL lock_timeout = DEFAULT")


def default_fold_and_delete(cursor, *, before: dt.datetime, rollup_seconds: int) -> int:
    """The default partition's rows older than `before`, folded and deleted (there are
    normally none; a stray row older than the retention is the only one that gets here)."""
    cursor.execute(
        "WITH moved AS ("
        f" DELETE FROM {DEFAULT} WHERE at < %s RETURNING system_id, metric, subject, at, value),"
        " folded AS ("
        " INSERT INTO monitoring_samplerollup"
        " (system_id, metric, subject, bucket, mean, minimum, maximum, count)"
        " SELECT system_id, metric, subject,"
        " date_bin(make_interval(secs => %s), at, TIMESTAMPTZ '1970-01-01 00:00:00+00'),"
        " avg(value), min(value), max(value), count(*) FROM moved"
        " GROUP BY 1, 2, 3, 4 RETURNING count)"
        " SELECT coalesce(sum(count), 0) FROM folded",
        [before, rollup_seconds],
    )
    return int(cursor.fetchone()[0])


# --- converting the table (migration) -------------------------------------------------------


def convert_to_partitioned(cursor, *, today: dt.date, days_ahead: int) -> None:
    """Turn the plain table into the partitioned one, keeping every row, its id, the
    indexes, the foreign key and the id sequence's position. Runs inside the migration's
    transaction: all of it or none."""
    cursor.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = %s::regclass AND contype = 'f'",
        [PARENT],
    )
    foreign_keys = cursor.fetchall()
    cursor.execute(f"LOCK TABLE {PARENT} IN ACCESS EXCLUSIVE MODE")
    cursor.execute(f"ALTER TABLE {PARENT} RENAME TO monitoring_sample_plain")
    for name, _definition in foreign_keys:
        cursor.execute(f"ALTER TABLE monitoring_sample_plain DROP CONSTRAINT {name}")
    cursor.execute("ALTER TABLE monitoring_sample_plain DROP CONSTRAINT monitoring_sample_pkey")
    cursor.execute("DROP INDEX monitoring_sample_series, monitoring_sample_at")
    cursor.execute("SELECT coalesce(max(id), 0) + 1 FROM monitoring_sample_plain")
    next_id = cursor.fetchone()[0]
    cursor.execute("ALTER TABLE monitoring_sample_plain ALTER COLUMN id DROP IDENTITY")
    cursor.execute(
        f"CREATE TABLE {PARENT} (LIKE monitoring_sample_plain INCLUDING DEFAULTS) "
        "PARTITION BY RANGE (at)"
    )
    cursor.execute(f"CREATE SEQUENCE {PARENT}_id_seq START %s OWNED BY {PARENT}.id", [next_id])
    cursor.execute(
        f"ALTER TABLE {PARENT} ALTER COLUMN id SET DEFAULT nextval('{PARENT}_id_seq'::regclass)"
    )
    cursor.execute(f"ALTER TABLE {PARENT} ADD CONSTRAINT {PARENT}_pkey PRIMARY KEY (id, at)")
    cursor.execute(
        f"CREATE INDEX monitoring_sample_series ON {PARENT} (system_id, metric, subject, at)"
    )
    cursor.execute(f"CREATE INDEX monitoring_sample_at ON {PARENT} (at)")
    for name, definition in foreign_keys:
        cursor.execute(f"ALTER TABLE {PARENT} ADD CONSTRAINT {name} {definition}")
    cursor.execute(f"CREATE TABLE {DEFAULT} PARTITION OF {PARENT} DEFAULT")
    cursor.execute("SELECT DISTINCT (at AT TIME ZONE 'UTC')::date FROM monitoring_sample_plain")
    days = {row[0] for row in cursor.fetchall()}
    days |= {today + dt.timedelta(days=i) for i in range(days_ahead + 1)}
    for day in sorted(days):
        start, end = _bounds(day)
        cursor.execute(
            f"CREATE TABLE {partition_name(day)} PARTITION OF {PARENT} "
            "FOR VALUES FROM (%s) TO (%s)",
            [start, end],
        )
    cursor.execute(
        f"INSERT INTO {PARENT} (id, at, metric, subject, value, system_id) "
        "SELECT id, at, metric, subject, value, system_id FROM monitoring_sample_plain"
    )
    cursor.execute("DROP TABLE monitoring_sample_plain")
    cursor.execute(f"ANALYZE {PARENT}")


def convert_to_plain(cursor) -> None:
    """The way back: one plain table with an identity key, every row kept."""
    cursor.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = %s::regclass AND contype = 'f'",
        [PARENT],
    )
    foreign_keys = cursor.fetchall()
    cursor.execute(f"SELECT coalesce(max(id), 0) + 1 FROM {PARENT}")
    next_id = cursor.fetchone()[0]
    cursor.execute(f"ALTER TABLE {PARENT} RENAME TO monitoring_sample_by_day")
    cursor.execute("ALTER INDEX monitoring_sample_series RENAME TO monitoring_sample_series_by_day")
    cursor.execute("ALTER INDEX monitoring_sample_at RENAME TO monitoring_sample_at_by_day")
    cursor.execute("ALTER INDEX monitoring_sample_pkey RENAME TO monitoring_sample_pkey_by_day")
    cursor.execute(f"CREATE TABLE {PARENT} (LIKE monitoring_sample_by_day)")
    cursor.execute(
        f"ALTER TABLE {PARENT} ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY "
        "(START WITH %s)",
        [next_id],
    )
    cursor.execute(
        f"INSERT INTO {PARENT} (id, at, metric, subject, value, system_id) OVERRIDING SYSTEM "
        "VALUE SELECT id, at, metric, subject, value, system_id FROM monitoring_sample_by_day"
    )
    cursor.execute("DROP TABLE monitoring_sample_by_day")  # its partitions and sequence too
    cursor.execute(f"ALTER TABLE {PARENT} ADD CONSTRAINT {PARENT}_pkey PRIMARY KEY (id)")
    cursor.execute(
        f"CREATE INDEX monitoring_sample_series ON {PARENT} (system_id, metric, subject, at)"
    )
    cursor.execute(f"CREATE INDEX monitoring_sample_at ON {PARENT} (at)")
    for name, definition in foreign_keys:
        cursor.execute(f"ALTER TABLE {PARENT} ADD CONSTRAINT {name} {definition}")
