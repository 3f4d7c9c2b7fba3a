"""Who may see what: login everywhere, throttled logins, the runbook's role groups."""

import io

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.urls import URLPattern, URLResolver, get_resolver

from opsportal.audit.models import AuditRecord
from opsportal.defaults import load_defaults

pytestmark = pytest.mark.django_db

# Reachable without a session by design: liveness, the login page, the token-guarded feeds.
PUBLIC_PREFIXES = (
    "/health",
    "/metrics",
    "/admin/login/",
    "/admin/logout/",
    "/static/",
    "/admin/jsi18n/",
)


def _walk(patterns, prefix=""):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern)


def concrete(route: str) -> str:
    """A URL for a route, with made-up values for its parameters."""
    import re

    url = re.sub(r"<(?:\w+:)?object_id>", "1", route)
    url = re.sub(r"<(?:int:)?\w*(?:id|pk)>", "1", url)
    url = re.sub(r"<path:\w+>", "1", url)
    url = re.sub(r"<\w+:\w+>|<\w+>", "x", url)
    url = url.replace("^", "").replace("$", "").replace("\\Z", "")
    url = re.sub(r"\(\?P<\w+>[^)]*\)", "x", url)
    return "/" + url.lstrip("/")


def test_every_admin_url_refuses_anonymous_visitors(client):
    routes = sorted(set(_walk(get_resolver().url_patterns)))
    checked = 0
    for route in routes:
        url = concrete(route)
        if url.startswith(PUBLIC_PREFIXES) or not url.startswith("/admin/"):
            continue
        response = client.get(url)
        assert response.status_code in (302, 404), (url, response.status_code)
        if response.status_code == 302:
            assert "/admin/login/" in response["Location"], url
        checked += 1
        post = client.post(url, {})
        assert post.status_code in (302, 403, 404, 405), (url, post.status_code)
    registered = len(admin.site._registry)
    assert checked >= registered * 4


def test_every_registered_model_page_sends_anonymous_to_login(client):
    for model in admin.site._registry:
        opts = model._meta
        for url in (
            f"/admin/{opts.app_label}/{opts.model_name}/",
            f"/admin/{opts.app_label}/{opts.model_name}/add/",
            f"/admin/{opts.app_label}/{opts.model_name}/1/change/",
        ):
            response = client.get(url)
            assert response.status_code == 302, url
            assert response["Location"].startswith("/admin/login/"), url


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
