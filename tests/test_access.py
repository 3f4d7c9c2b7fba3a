"""Who may see what: login everywhere, throttled logins, the runbook's role groups."""

import io

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command

from opsportal.audit.models import AuditRecord
from opsportal.defaults import load_defaults

pytestmark = pytest.mark.django_db

# Who may reach each URL (anonymous visitors included) is the role matrix:
# tests/test_role_matrix.py.


def test_repeated_failed_logins_are_throttled(client, superuser, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post("/admin/login/", {"username": "root", "password": "wrong"})
    response = client.post("/admin/login/", {"username": "root", "password": "pw-root-123!"})
    assert response.status_code == 429
    assert not response.wsgi_request.user.is_authenticated


def test_role_groups_are_seeded_with_permissions():
    load_defaults()
    groups = {
        g.name: set(g.permissions.values_list("codename", flat=True)) for g in Group.objects.all()
    }
    assert set(groups) >= {
        "Viewers",
        "On-call engineers",
        "Database admins",
        "DevOps",
        "Security team",
    }
    assert "view_dockerengine" in groups["Viewers"]
    assert "add_dockerengine" not in groups["Viewers"]
    assert "test_connection" in groups["On-call engineers"]
    assert "add_dockerengine" in groups["DevOps"]
    assert "view_auditrecord" in groups["Viewers"]


def test_a_viewer_sees_but_cannot_change_or_test(client, docker_engine):
    load_defaults()
    viewer = get_user_model().objects.create_user("vera", password="viewer-pass-123", is_staff=True)
    viewer.groups.add(Group.objects.get(name="Viewers"))
    client.force_login(viewer)
    assert client.get(f"/admin/systems/dockerengine/{docker_engine.pk}/change/").status_code == 200
    assert client.get("/admin/systems/dockerengine/add/").status_code == 403
    response = client.post(f"/admin/systems/dockerengine/{docker_engine.pk}/test-connection/")
    assert response.status_code == 403


def test_load_defaults_twice_changes_nothing():
    load_defaults()
    from django.apps import apps

    def snapshot():
        return {m._meta.label: m._default_manager.count() for m in apps.get_models()}

    before, audit_before = snapshot(), AuditRecord.objects.count()
    load_defaults()
    assert snapshot() == before
    assert AuditRecord.objects.count() == audit_before


def test_ensure_admin_creates_one_admin_once(monkeypatch):
    monkeypatch.delenv("OPSPORTAL_ADMIN_PASSWORD", raising=False)
    out = io.StringIO()
    call_command("ensure_admin", stdout=out)
    password = out.getvalue().split("password: ")[1].split()[0]
    user = get_user_model().objects.get(username="admin")
    assert user.is_superuser and user.check_password(password)
    out = io.StringIO()
    call_command("ensure_admin", stdout=out)
    assert "exists already" in out.getvalue()
    assert get_user_model().objects.filter(is_superuser=True).count() == 1


def test_ensure_admin_takes_the_password_from_the_environment(monkeypatch):
    monkeypatch.setenv("OPSPORTAL_ADMIN_PASSWORD", "from-env-pass-123")
    out = io.StringIO()
    call_command("ensure_admin", stdout=out)
    assert "from-env-pass-123" not in out.getvalue()
    assert get_user_model().objects.get(username="admin").check_password("from-env-pass-123")


def test_devops_can_delete_a_system(client, docker_engine):
    """Deleting a Docker engine deletes its row in the shared System table too, so the
    role needs both permissions."""
    load_defaults()
    devops = get_user_model().objects.create_user("dora", password="devops-pass-123", is_staff=True)
    devops.groups.add(Group.objects.get(name="DevOps"))
    client.force_login(devops)
    url = f"/admin/systems/dockerengine/{docker_engine.pk}/delete/"
    assert client.post(url, {"post": "yes"}).status_code == 302
    from opsportal.systems.models import System

    assert not System.objects.filter(pk=docker_engine.pk).exists()
