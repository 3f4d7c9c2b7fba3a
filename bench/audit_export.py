"""The audit history's exports under gunicorn: how many records a second the API's NDJSON
export and the admin's CSV download stream, and so how many fit in one response before
gunicorn's worker timeout (WEB_TIMEOUT, 60 s) ends it (the API's export comes in parts of
API_AUDIT_EXPORT_PART_ROWS; the CSV download refuses more than AUDIT_CSV_EXPORT_MAX_ROWS).

The baseline, measured in the same run on the same rows: PostgreSQL's own COPY of the same
columns as CSV to this process (what the database can hand over at best, no Python per row).

With 1,000,000 records (`--records`), the export asked for all of them follows the `Link:
rel="next"` header from part to part, as a client does, and the figures are for the whole
range; the CSV download is of one source's records (a quarter), signed in through the real
two-factor form. Runs with the test env (`make bench`): python bench/audit_export.py [--records N]
It creates its own database and removes it (and its processes) at the end.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

import psycopg  # noqa: E402
import requests  # noqa: E402

from bench.admin_load import PASSWORD, sign_in  # noqa: E402
from bench.health import bench_database, free_port, get, gunicorn, wait_until  # noqa: E402

# The export's columns, in a COPY of the same rows.
COPY_QUERY = (
    "COPY (SELECT id, at, actor_name, source, action, object_type, object_id, object_repr,"
    " outcome, message, changes, remote_addr, hash FROM audit_auditrecord ORDER BY id)"
    " TO STDOUT (FORMAT csv)"
)


def prepare(records: int) -> str:
    """Migrate, seed, write `records` audit records (a realistic mix, hashes not chained:
    the export does not check them); returns a Viewer's read token."""
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.core.management import call_command
    from django.db import connection

    from opsportal.api.services import api_token_create

    call_command("migrate", verbosity=0)
    call_command("load_defaults", verbosity=0)
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO audit_auditrecord (at, actor_name, source, action, object_type,"
            " object_id, object_repr, changes, outcome, message, remote_addr, prev_hash, hash)"
            " SELECT now() - make_interval(secs => %s - g), 'alice', "
            " (ARRAY['admin','api','worker','schedule'])[1 + g %% 4],"
            " (ARRAY['change','operation','create','login'])[1 + g %% 4],"
            " 'incidents.incident', (g %% 50000)::text, 'Orders database refuses connections #' || g,"
            " jsonb_build_object('status', jsonb_build_array('open', 'acknowledged')),"
            " 'success', 'Acknowledged by alice: looking at the connection pool ' || g,"
            " '10.0.0.7', md5(g::text) || md5(g::text), md5((g + 1)::text) || md5(g::text)"
            " FROM generate_series(1, %s) g",
            [records, records],
        )
    print(f"generated {records:,} audit records in {time.perf_counter() - started:.1f} s")
    from tests.signin import enrol_authenticator

    viewer = get_user_model().objects.create_user("viewer", password=PASSWORD, is_staff=True)
    viewer.groups.add(Group.objects.get(name="Viewers"))
    enrol_authenticator(viewer)
    return api_token_create(user=viewer, name="bench", scope="read")[1]


def copy_rate(dsn: str) -> tuple[int, int, float]:
    started = time.perf_counter()
    rows = size = 0
    with psycopg.connect(dsn) as conn, conn.cursor() as cursor, cursor.copy(COPY_QUERY) as copy:
        for chunk in copy:
            size += len(chunk)
            rows += bytes(chunk).count(b"\n")
    return rows, size, time.perf_counter() - started


def export(port: int, token: str, query: str = "") -> tuple[int, int, float, int, float]:
    """Follows the export's parts; returns records, bytes, seconds, parts, slowest part (s)."""
    url = f"http://127.0.0.1:{port}/api/v1/audit-records/export/{query}"
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/x-ndjson"}
    records = size = parts = 0
    slowest = 0.0
    started = time.perf_counter()
    while url:
        part_started = time.perf_counter()
        with requests.get(url, headers=headers, stream=True, timeout=120) as response:
            assert response.status_code == 200, (response.status_code, response.text[:300])
            for chunk in response.iter_content(chunk_size=1 << 16):
                size += len(chunk)
                records += chunk.count(b"\n")
            link = re.search(r'<([^>]+)>;\s*rel="next"', response.headers.get("Link", ""))
        parts += 1
        slowest = max(slowest, time.perf_counter() - part_started)
        url = link[1] if link else ""
    return records, size, time.perf_counter() - started, parts, slowest


def csv_download(port: int) -> tuple[int, int, float]:
    """The admin's CSV of the records from the admin (a quarter), signed in as the Viewer."""
    base = f"http://127.0.0.1:{port}"
    with requests.Session() as session:
        sign_in(session, base, "viewer")
        started = time.perf_counter()
        url = f"{base}/admin/audit/auditrecord/export.csv?source__exact=admin"
        with session.get(url, stream=True, timeout=120, allow_redirects=False) as response:
            assert response.status_code == 200, (response.status_code, response.text[:300])
            size = lines = 0
            for chunk in response.iter_content(chunk_size=1 << 16):
                size += len(chunk)
                lines += chunk.count(b"\n")
    return lines - 1, size, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=1_000_000)
    args = parser.parse_args()
    admin_dsn = os.environ.get("OPSPORTAL_TEST_PG_DSN")
    if not admin_dsn:
        print("Run with the test environment: `make bench` (sources deploy/dev/test.env).")
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="opsportal-bench-export-"))
    with bench_database(admin_dsn) as dbname:
        dsn = admin_dsn.rsplit("/", 1)[0] + "/" + dbname
        env = {**os.environ, "DATABASE_URL": dsn, "OPSPORTAL_VAR_DIR": str(workdir / "var")}
        os.environ.update({k: env[k] for k in ("DATABASE_URL", "OPSPORTAL_VAR_DIR")})
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "opsportal.settings")
        token = prepare(args.records)
        from django.conf import settings
        from django.db import connections

        part_rows = settings.API_AUDIT_EXPORT_PART_ROWS
        connections.close_all()
        copied, copied_bytes, copy_seconds = copy_rate(dsn)
        port = free_port()
        with gunicorn("opsportal.wsgi", env=env, port=port, log=workdir / "portal.log"):
            wait_until(lambda: get(port, "/health")[0] == 200, timeout=60, what="portal")
            records, size, seconds, parts, slowest = export(port, token)
            csv_rows, csv_bytes, csv_seconds = csv_download(port)
            # A search no record matches: every part scans its id range and finds nothing.
            sparse = export(port, token, "?search=no-such-words")
        csv_limit = settings.AUDIT_CSV_EXPORT_MAX_ROWS
    timeout = int(os.environ.get("WEB_TIMEOUT", "60"))
    rate = records / seconds
    print(f"\nAudit export, {args.records:,} records (plus the seeded defaults' own)\n")
    print(f"{'':34} {'records':>10} {'MB':>8} {'seconds':>8} {'records/s':>10}")
    print(
        f"{'baseline: COPY ... TO STDOUT (csv)':34} {copied:>10,} {copied_bytes / 1e6:>8.1f}"
        f" {copy_seconds:>8.2f} {copied / copy_seconds:>10,.0f}"
    )
    print(
        f"{'export, NDJSON via gunicorn':34} {records:>10,} {size / 1e6:>8.1f} {seconds:>8.2f} {rate:>10,.0f}"
    )
    print(
        f"{'admin CSV download via gunicorn':34} {csv_rows:>10,} {csv_bytes / 1e6:>8.1f}"
        f" {csv_seconds:>8.2f} {csv_rows / csv_seconds:>10,.0f}"
    )
    print(
        f"\nCSV: at most {csv_limit:,} records a download (AUDIT_CSV_EXPORT_MAX_ROWS): about "
        f"{csv_limit / (csv_rows / csv_seconds):.1f} s at this rate"
    )
    print(
        f"{parts} parts of at most {part_rows:,} records (API_AUDIT_EXPORT_PART_ROWS); slowest "
        f"part {slowest:.1f} s against the worker timeout of {timeout} s; at this rate one "
        f"response could carry about {rate * timeout:,.0f} records before the timeout"
    )
    print(
        f"a search no record matches (?search=no-such-words): {sparse[3]} parts of at most "
        f"{settings.API_AUDIT_EXPORT_PART_IDS:,} ids (API_AUDIT_EXPORT_PART_IDS) in "
        f"{sparse[2]:.1f} s, {sparse[0]} records; slowest part {sparse[4]:.1f} s"
    )
    print(f"export / COPY time per record: {(seconds / records) / (copy_seconds / copied):.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
