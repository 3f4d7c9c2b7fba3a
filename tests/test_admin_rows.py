"""The changelists' rows written by opsportal.admin_rows are Django's own markup, cell for
cell, on every registered changelist (plain, filtered so the links carry the preserved
filters, in a popup), and on an admin whose columns take each of Django's paths (functions,
admin methods with booleans and their own empty value, properties, `<fk>_id`, nullable
foreign keys, choices, dates, a primary key that must be quoted in its URL)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib import admin
from django.contrib.admin.options import IS_POPUP_VAR
from django.contrib.admin.templatetags.admin_list import results
from django.contrib.admin.views.main import ChangeList
from django.contrib.auth.models import Group
from django.contrib.sessions.models import Session
from django.test import RequestFactory
from django.urls import path, resolve, reverse
from django.utils import timezone

from incidents.models import Incident, Severity
from incidents.services import incident_open
from opsportal.admin_rows import RowWriter
from opsportal.audit.models import AuditAction, AuditSource
from opsportal.audit.services import audit_record
from opsportal.people.models import Contact, Team

pytestmark = pytest.mark.django_db


@pytest.fixture
def varied_rows(superuser):
    """Rows with set and unset foreign keys, choices, blank text, dates in and out of the
    same minute, booleans both ways."""
    database, network = Team.objects.create(name="Database"), Team.objects.create(name="Net")
    Contact.objects.create(name="Ann <b>", team=database, email="ann@example.com", active=True)
    Contact.objects.create(name="Bob & co", team=network, email="bob@example.com", active=False)
    for n, (severity, team) in enumerate(
        [(Severity.SEV1, database), (Severity.SEV3, None), (Severity.SEV2, network)]
    ):
        incident_open(
            title=f"Disk <full> #{n}",
            severity=severity,
            category="database",
            team=team,
            reporter=superuser if n else None,
            symptoms="   " if n == 1 else "symptoms",
        )
    for n in range(3):
        audit_record(
            action=AuditAction.CHANGE,
            object_type="incidents.incident",
            object_id=str(n) if n else "",
            object_repr=f"Incident <{n}>",
            message="x" * (200 if n == 2 else 10),
            source=AuditSource.ADMIN,
        )
    return database


def rows_as_django_writes_them(changelist) -> list[str]:
    """Django's own rows, each as one string."""
    return ["".join(str(cell) for cell in row) for row in results(changelist)]


def _changelist(model_admin, superuser, query: str = ""):
    opts = model_admin.model._meta
    path = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
    request = RequestFactory().get(path + query)
    request.user = superuser
    request.resolver_match = resolve(path)  # the preserved filters are read from it
    changelist = model_admin.get_changelist_instance(request)
    changelist.formset = None
    return changelist


def _compare(changelist) -> int:
    writer = RowWriter(changelist)
    ours = [str(writer.row(result)) for result in changelist.result_list]
    assert ours == list(rows_as_django_writes_them(changelist)), changelist.model.__name__
    return len(ours)


def test_every_registered_changelist_writes_djangos_rows(varied_rows, superuser):
    compared = {}
    for model, model_admin in admin.site._registry.items():
        if model_admin.list_editable:
            continue  # Django writes those (form widgets in the cells)
        compared[model.__name__] = _compare(_changelist(model_admin, superuser))
    assert compared["Incident"] == 3
    assert compared["AuditRecord"] >= 3
    assert compared["Contact"] == 2
    assert compared["User"] >= 1


def test_filtered_and_popup_changelists_write_djangos_links(varied_rows, superuser):
    incidents = admin.site._registry[Incident]
    filtered = _changelist(incidents, superuser, f"?team__id__exact={varied_rows.pk}")
    assert _compare(filtered) == 1
    row = str(RowWriter(filtered).row(filtered.result_list[0]))
    assert "_changelist_filters=team__id__exact" in row
    popup = _changelist(admin.site._registry[Group], superuser, f"?{IS_POPUP_VAR}=1")
    assert popup.is_popup
    Group.objects.get_or_create(name="Popup group")
    popup = _changelist(admin.site._registry[Group], superuser, f"?{IS_POPUP_VAR}=1")
    assert _compare(popup) >= 1
    assert "data-popup-opener=" in str(RowWriter(popup).row(popup.result_list[0]))


def team_initial(incident):
    return incident.team.name[0] if incident.team else None


class EveryKindOfColumn(admin.ModelAdmin):
    list_display = [
        "id",
        team_initial,
        "is_open",
        "noted",
        "team",
        "team_id",
        "commander",
        "severity",
        "symptoms",
        "detected_at",
        "resolved_at",
        "severity_label",
        "public",  # a reverse one-to-one (none exists: the empty value)
        "team__name",  # a related lookup, through a missing team on some rows
    ]
    list_display_links = ["id", "severity"]

    @admin.display(boolean=True, description="Open")
    def is_open(self, incident):
        return incident.resolved_at is None

    @admin.display(empty_value="(nothing)")
    def noted(self, incident):
        return None


class SessionRows(admin.ModelAdmin):
    list_display = ["session_key", "expire_date"]


class UnlinkedColumns(EveryKindOfColumn):
    list_display_links = None


class TicketLinks(ChangeList):
    def url_for_result(self, result):
        return f"/tickets/{result.pk}/"


class LinkedElsewhere(admin.ModelAdmin):
    list_display = ["id", "title"]

    def get_changelist(self, request, **kwargs):
        return TicketLinks


columns_site = admin.AdminSite(name="admin")
columns_site.register(Incident, EveryKindOfColumn)
columns_site.register(Session, SessionRows)
unlinked_site = admin.AdminSite(name="admin")
unlinked_site.register(Incident, UnlinkedColumns)
elsewhere_site = admin.AdminSite(name="admin")
elsewhere_site.register(Incident, LinkedElsewhere)
urlpatterns = [path("admin/", columns_site.urls)]


@pytest.mark.urls(__name__)
def test_every_kind_of_column_and_a_quoted_primary_key(varied_rows, superuser):
    changelist = _changelist(columns_site._registry[Incident], superuser)
    assert _compare(changelist) == 3
    assert "(nothing)" in str(RowWriter(changelist).row(changelist.result_list[0]))
    unlinked = _changelist(unlinked_site._registry[Incident], superuser)
    assert _compare(unlinked) == 3
    assert "<a href" not in str(RowWriter(unlinked).row(unlinked.result_list[0]))
    # A ChangeList that links its rows elsewhere keeps its links.
    elsewhere = _changelist(elsewhere_site._registry[Incident], superuser)
    assert _compare(elsewhere) == 3
    first = elsewhere.result_list[0]
    assert f'href="/tickets/{first.pk}/"' in str(RowWriter(elsewhere).row(first))
    # Primary keys admin URLs quote ("/" becomes "_2F", "_" "_5F": written from the
    # placeholder URL) and one with characters reverse() percent-encodes (Django's path).
    expires = timezone.now() + dt.timedelta(days=1)
    Session.objects.create(session_key="odd/key_1", session_data="", expire_date=expires)
    Session.objects.create(session_key="plainkey", session_data="", expire_date=expires)
    Session.objects.create(session_key="odd key é", session_data="", expire_date=expires)
    sessions = _changelist(columns_site._registry[Session], superuser)
    assert _compare(sessions) == 3
    links = [str(RowWriter(sessions).row(s)) for s in sessions.result_list]
    assert any("/odd_2Fkey_5F1/change/" in link for link in links)
    assert any("/odd%20key%20%C3%A9/change/" in link for link in links)


def test_the_changelist_page_shows_the_rows(varied_rows, staff_client, superuser):
    response = staff_client.get("/admin/incidents/incident/")
    assert response.status_code == 200
    html = response.content.decode()
    origins = {template.origin.name for template in response.templates}
    assert any(name.endswith("opsportal/templates/admin/change_list.html") for name in origins)
    changelist = _changelist(admin.site._registry[Incident], superuser)
    for row in rows_as_django_writes_them(changelist):
        assert f"<tr>{row}</tr>" in html
