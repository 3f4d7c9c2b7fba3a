"""The audit CSV export opened in a spreadsheet: text an outsider chose (a failed login's
username) must not become a formula."""

import csv
import io

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from opsportal.audit.models import AuditRecord
from opsportal.defaults import load_defaults
from tests.signin import TwoFactorClient as Client

pytestmark = pytest.mark.django_db

FORMULA = '=HYPERLINK("http://x","y")'


@pytest.fixture
def security_reader(db) -> Client:
    """Someone from the Security team reading the audit history."""
    load_defaults()
    user = get_user_model().objects.create_user("sam", password="sec-pass-123", is_staff=True)
    user.groups.add(Group.objects.get(name="Security team"))
    client = Client()
    client.force_login(user)
    return client


def export_rows(client: Client, **filters) -> list[dict]:
    response = client.get("/admin/audit/auditrecord/export.csv", filters)
    assert response.status_code == 200
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_a_failed_login_username_is_not_a_formula_in_the_csv(client, security_reader):
    for username in (FORMULA, "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(1,2)", "\tx", "\rx"):
        client.post("/admin/login/", {"username": username, "password": "whatever"})
    rows = export_rows(security_reader, action__exact="login_failed")
    assert len(rows) == 6
    for row in rows:
        for column, cell in row.items():
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), (column, cell)
    assert f"'{FORMULA}" in {row["object_repr"] for row in rows}
    # The record itself keeps what was typed; only the export is made safe.
    assert AuditRecord.objects.filter(object_repr=FORMULA).exists()


def test_a_huge_failed_login_username_is_recorded_bounded(client):
    from opsportal.audit.signals import on_login_failed

    # Beyond what the login form lets through, as any caller of authenticate() may send.
    on_login_failed(sender=None, credentials={"username": "u" * 100_000})
    record = AuditRecord.objects.get(action="login_failed")
    assert len(record.object_repr) == 150 and record.object_repr.endswith("…")
    assert len(record.message) < 200


def test_more_records_than_one_download_holds_are_refused_before_it_starts(
    client, security_reader, settings
):
    """A download the web worker's timeout would cut short is not started: the page says
    how many one export holds and how to get them, with the filters kept."""
    settings.AUDIT_CSV_EXPORT_MAX_ROWS = 3
    for n in range(4):
        client.post("/admin/login/", {"username": f"intruder-{n}", "password": "whatever"})
    filters = {"action__exact": "login_failed"}
    refused = security_reader.get("/admin/audit/auditrecord/export.csv", filters)
    assert refused.status_code == 302
    assert refused["Location"] == "/admin/audit/auditrecord/?action__exact=login_failed"
    page = security_reader.get(refused["Location"])
    text = [str(m) for m in page.context["messages"]]
    assert text == [
        "More than 3 records match these filters, more than one export holds: narrow them "
        "(a date range, an action, a source), or fetch them with the API's export "
        "(GET /api/v1/audit-records/export/), which comes in parts."
    ]
    # Exactly the limit is one download, whole.
    settings.AUDIT_CSV_EXPORT_MAX_ROWS = 4
    rows = export_rows(security_reader, **filters)
    assert sorted(row["object_repr"] for row in rows) == [f"intruder-{n}" for n in range(4)]
