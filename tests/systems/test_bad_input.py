"""Issue #17, class 5 outside incidents: ids that are not numbers or do not fit a 64-bit key
in custom admin URLs are "not found", never a server error; ids in choice fields are form
errors."""

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db

HUGE = "9" * 25


@pytest.mark.parametrize(
    "path",
    [
        f"/admin/systems/dockerengine/{HUGE}/change/",
        "/admin/systems/dockerengine/abc/test-connection/",
        f"/admin/systems/dockerengine/{HUGE}/test-connection/",
        "/admin/systems/postgresdatabase/abc/test-connection/",
        "/admin/systems/rediscache/abc/test-connection/",
        "/admin/systems/httpendpoint/abc/test-connection/",
        "/admin/systems/system/abc/change/",
        f"/admin/systems/system/{HUGE}/change/",
        "/admin/backups/backup/abc/verify/",
        "/admin/backups/backup/abc/drill/",
        "/admin/backups/backup/abc/restore/",
        f"/admin/backups/backup/{HUGE}/restore/",
        "/admin/auth/user/abc/two-factor/reset/",
        f"/admin/auth/user/{HUGE}/two-factor/reset/",
    ],
)
@pytest.mark.parametrize("method", ["get", "post"])
def test_a_malformed_id_in_an_admin_url_is_not_found(staff_client, path, method):
    response = getattr(staff_client, method)(path)
    assert response.status_code in (302, 404), (path, response.status_code)


@pytest.mark.parametrize("value", [HUGE, "-1", "abc", "1.5", "\uff11"])
def test_a_malformed_id_in_a_choice_field_is_a_form_error(staff_client, value):
    response = staff_client.post(
        reverse("admin:monitoring_alertrule_add"), {"name": "r", "system": value}
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors
