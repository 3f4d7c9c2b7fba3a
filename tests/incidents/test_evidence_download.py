"""Downloading preserved evidence is the Security team's (and superusers'): every seeded role
group tries, on a file captured for real; refusals are in the custody trail too."""

import hashlib
import time

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.urls import reverse

from incidents.services import incident_open
from opsportal.access import ROLE_PERMISSIONS
from opsportal.audit.models import AuditRecord
from opsportal.defaults import load_defaults
from opsportal.operations.models import Evidence, OperationStatus
from opsportal.operations.services import operation_request
from opsportal.operations.tasks import execute_operation

pytestmark = pytest.mark.docker

MAY_DOWNLOAD = {"Security team"}


def staff_in(role: str):
    user = get_user_model().objects.create_user(
        role.lower().replace(" ", "-"), password="role-pass-123", is_staff=True
    )
    user.groups.add(Group.objects.get(name=role))
    return user


def test_only_the_security_team_downloads_evidence(
    client, superuser, run_container, docker_engine, settings, tmp_path
):
    settings.MEDIA_ROOT = tmp_path
    load_defaults()
    container = run_container(
        ["sh", "-c", "echo DATABASE_PASSWORD=in-the-logs; echo ready; sleep 600"],
        environment={"API_TOKEN": "evidence-canary-token"},
    )
    deadline = time.monotonic() + 15
    while b"ready" not in container.logs() and time.monotonic() < deadline:
        time.sleep(0.1)
    security = staff_in("Security team")
    incident = incident_open(
        title="intrusion",
        severity="sev2",
        category="security",
        reporter=security,
        affected_systems=[docker_engine],
    )
    operation = operation_request(
        kind="evidence_preserve",
        target=docker_engine,
        params={"container": container.name},
        actor=security,
        reason="preserve before isolating",
        incident=incident,
    )
    execute_operation.apply(args=[operation.pk])
    operation.refresh_from_db()
    assert operation.status == OperationStatus.SUCCEEDED, operation.error
    inspect = Evidence.objects.get(incident=incident, name="inspect.json")
    captured = (tmp_path / inspect.path).read_bytes()
    assert b"evidence-canary-token" in captured  # the forensic copy is not masked

    url = reverse("admin:incidents_incident_evidence", args=[incident.pk, inspect.pk])
    page_url = reverse("admin:incidents_incident_change", args=[incident.pk])
    users = {role: staff_in(role) for role in ROLE_PERMISSIONS if role != "Security team"}
    users["Security team"] = security
    users["superuser"] = superuser
    assert set(users) == {
        "Viewers",
        "On-call engineers",
        "Database admins",
        "DevOps",
        "Security team",
        "superuser",
    }
    for role, user in users.items():
        client.force_login(user)
        allowed = role in MAY_DOWNLOAD or user.is_superuser
        page = client.get(page_url).content.decode()
        assert "inspect.json" in page, role  # everyone sees that the evidence exists
        assert (f'href="../evidence/{inspect.pk}/"' in page) == allowed, role
        response = client.get(url)
        records = AuditRecord.objects.filter(
            object_type="operations.evidence", object_id=str(inspect.pk), actor=user
        )
        if allowed:
            assert response.status_code == 200, role
            downloaded = b"".join(response.streaming_content)
            assert downloaded == captured and hashlib.sha256(downloaded).hexdigest() == (
                inspect.sha256
            )
            assert records.get().outcome == "success", role
        else:
            assert response.status_code == 403, role
            assert b"evidence-canary-token" not in response.content, role
            refused = records.get()
            assert refused.outcome == "failure", role
            assert refused.message == (
                f"Download refused: Evidence inspect.json (sha256 {inspect.sha256}) of "
                f"incident #{incident.pk}: {user.get_username()} lacks the "
                "'operations.download_evidence' permission."
            ), role
