"""The shared admin pieces (opsportal/admin_mixins.py) and the admins that use them."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.test import RequestFactory

from opsportal.admin_mixins import ReadOnlyAdminMixin

# Every admin that shows service-written records read-only, and whether its rows may still be
# deleted with the model's delete permission (history kept as evidence may not).
READ_ONLY_ADMINS = {
    "audit.AuditRecord": False,
    "operations.Evidence": False,
    "people.Notification": False,
    "backups.Backup": False,
    "backups.Restore": False,
    "backups.RestoreDrill": False,
    "systems.System": True,
    "health.Heartbeat": True,
    "monitoring.AlertState": True,
}
READ_ONLY_WINDOW_INLINES = {
    "maintenance.Announcement",
    "maintenance.ChangeLogEntry",
    "incidents.Alert",
}


def _label(model) -> str:
    return model._meta.label


@pytest.fixture
def superuser_request(superuser):
    request = RequestFactory().get("/admin/")
    request.user = superuser
    return request


@pytest.mark.django_db
def test_read_only_admins_refuse_adding_and_changing_even_to_a_superuser(superuser_request):
    by_label = {_label(model): model_admin for model, model_admin in admin.site._registry.items()}
    for label, deletable in READ_ONLY_ADMINS.items():
        model_admin = by_label[label]
        assert isinstance(model_admin, ReadOnlyAdminMixin), label
        assert model_admin.has_add_permission(superuser_request) is False, label
        assert model_admin.has_change_permission(superuser_request) is False, label
        assert model_admin.has_delete_permission(superuser_request) is deletable, label
        # Reading stays under the view permission.
        assert model_admin.has_view_permission(superuser_request) is True, label


@pytest.mark.django_db
def test_read_only_inlines_of_a_window_offer_no_add_change_or_delete(superuser_request):
    from maintenance.models import MaintenanceWindow

    window_admin = admin.site._registry[MaintenanceWindow]
    inlines = {
        _label(inline.model): inline
        for inline in (cls(MaintenanceWindow, admin.site) for cls in window_admin.inlines)
    }
    for label in READ_ONLY_WINDOW_INLINES:
        inline = inlines[label]
        assert isinstance(inline, ReadOnlyAdminMixin), label
        assert inline.has_add_permission(superuser_request, None) is False, label
        assert inline.has_change_permission(superuser_request, None) is False, label
        formset = inline.get_formset(superuser_request, None)
        assert formset.can_delete is False, label
