"""Only the adapters talk to the systems we operate on (CONVENTIONS.md "Adapters"): a
service running SQL on a target bypasses the adapter's timeouts and error translation."""

import ast
from pathlib import Path

import psycopg
import pytest
from django.conf import settings

from opsportal.systems.adapters import postgres
from opsportal.systems.adapters.errors import AdapterError

# The client libraries of the systems we operate on.
SYSTEM_LIBRARIES = {"docker", "psycopg", "psycopg2", "redis", "requests"}
# Notification webhooks are chat channels we deliver to, not systems we operate on;
# transports.py is the notifications' own adapter (timeouts, messages without the URL).
ALLOWED = {"opsportal/people/transports.py"}
CODE = ["incidents", "backups", "maintenance", "opsportal"]


def _imported_libraries(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_only_adapters_import_the_system_client_libraries():
    base = Path(settings.BASE_DIR)
    offenders = {}
    for top in CODE:
        for path in (base / top).rglob("*.py"):
            relative = path.relative_to(base).as_posix()
            if "/adapters/" in relative or "/migrations/" in relative or relative in ALLOWED:
                continue
            found = _imported_libraries(path) & SYSTEM_LIBRARIES
            if found:
                offenders[relative] = sorted(found)
    assert offenders == {}


@pytest.mark.django_db
def test_scratch_database_create_count_and_drop(postgres_target, target_database_dsn):
    name = "opsportal_adapter_scratch_test"
    postgres.scratch_database_drop(postgres_target, name=name)
    postgres.scratch_database_create(postgres_target, name=name)
    try:
        with postgres.connect(postgres_target, dbname=name) as conn:
            conn.execute("CREATE TABLE public.things (id int)")
            conn.execute("INSERT INTO public.things SELECT generate_series(1, 7)")
            assert postgres.table_row_counts(conn) == {"public.things": 7}
        with pytest.raises(AdapterError, match="already exists"):
            postgres.scratch_database_create(postgres_target, name=name)
    finally:
        postgres.scratch_database_drop(postgres_target, name=name)
    with (
        pytest.raises(AdapterError, match="does not exist"),
        postgres.connect(postgres_target, dbname=name),
    ):
        pass


@pytest.mark.django_db
def test_other_client_sessions_are_listed_and_terminated(postgres_target, target_database_dsn):
    other = psycopg.connect(target_database_dsn, application_name="adapter-session-test")
    try:
        sessions = postgres.other_client_sessions(postgres_target)
        assert "adapter-session-test" in {app for _, _, app in sessions}
        assert postgres.terminate_other_client_sessions(postgres_target) >= 1
        with pytest.raises(psycopg.OperationalError):
            other.execute("SELECT 1")
        assert "adapter-session-test" not in {
            app for _, _, app in postgres.other_client_sessions(postgres_target)
        }
    finally:
        other.close()


@pytest.mark.django_db
def test_dump_snapshot_is_exported_and_counts_what_it_saw(postgres_target, target_database_dsn):
    with psycopg.connect(target_database_dsn, autocommit=True) as writer:
        writer.execute("DROP TABLE IF EXISTS public.snapshot_probe")
        writer.execute("CREATE TABLE public.snapshot_probe (id int)")
        writer.execute("INSERT INTO public.snapshot_probe VALUES (1), (2)")
        try:
            with postgres.dump_snapshot(postgres_target, statement_timeout_ms=10_000) as shared:
                assert shared.snapshot and shared.server_version
                # Rows written after the snapshot are not what pg_dump would dump.
                writer.execute("INSERT INTO public.snapshot_probe VALUES (3)")
                counts = postgres.table_row_counts(shared.connection)
            assert counts["public.snapshot_probe"] == 2
        finally:
            writer.execute("DROP TABLE IF EXISTS public.snapshot_probe")
