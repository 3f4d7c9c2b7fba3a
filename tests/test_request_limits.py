"""Every request body is bounded (issue 17): Django's own limits are set deliberately, so a
huge form post or one with thousands of fields is a 400 before any view reads it, and the
portal's state does not change."""

from __future__ import annotations

import pytest
from django.conf import settings

from incidents.models import Incident

pytestmark = pytest.mark.django_db


def test_the_limits_are_set_deliberately():
    assert settings.DATA_UPLOAD_MAX_MEMORY_SIZE == 2_621_440  # 2.5 MiB
    assert settings.DATA_UPLOAD_MAX_NUMBER_FIELDS == 2_000


def test_a_form_post_over_the_size_limit_is_a_400_and_changes_nothing(staff_client):
    body = {"title": "x", "severity": "sev3", "category": "other", "symptoms": "a" * 3_000_000}
    response = staff_client.post("/admin/incidents/incident/add/", body)
    assert response.status_code == 400
    assert not Incident.objects.exists()


def test_a_form_post_with_too_many_fields_is_a_400_and_changes_nothing(staff_client):
    body = {"title": "x", "severity": "sev3", "category": "other"}
    body.update({f"extra-{n}": "1" for n in range(2_100)})
    response = staff_client.post("/admin/incidents/incident/add/", body)
    assert response.status_code == 400
    assert not Incident.objects.exists()
