"""The admin's sidebar: built once per permission set (opsportal.admin_site) and written in
Python (opsportal/templatetags/portal_navigation.py), it must stay what Django's own
admin/app_list.html shows, for every seeded role, and follow a change of role at once."""

import re

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.template import engines
from django.test import RequestFactory

from opsportal.defaults import load_defaults

pytestmark = pytest.mark.django_db

ROLE_GROUPS = ["Viewers", "On-call engineers", "Database admins", "DevOps", "Security team"]
DJANGO_SIDEBAR = (
    "{% include 'admin/app_list.html' with app_list=available_apps show_changelinks=False %}"
)


def _normalized(html: str) -> str:
    return re.sub(r"\s*(<|>)\s*", r"\1", re.sub(r"\s+", " ", html)).replace(" >", ">").strip()


# The home page's list: every app and model with its add, change or view links.
DJANGO_HOME_LIST = (
    "{% include 'admin/app_list.html' with app_list=app_list show_changelinks=True %}"
)
PORTAL_HOME_LIST = (
    "{% load portal_navigation %}{% navigation_app_list app_list show_changelinks=True %}"
)


def _sidebars(user, path: str) -> tuple[str, str]:
    request = RequestFactory().get(path)
    request.user = user
    context = {**admin.site.each_context(request), "request": request}
    engine = engines["django"]
    django_html = engine.from_string(DJANGO_SIDEBAR).render(context)
    portal_html = engine.from_string("{% load portal_navigation %}{% navigation_app_list %}")
    return _normalized(django_html), _normalized(portal_html.render(context))


def _home_lists(user) -> tuple[str, str]:
    request = RequestFactory().get("/admin/")
    request.user = user
    context = {
        **admin.site.each_context(request),
        "request": request,
        "app_list": admin.site.get_app_list(request),
    }
    engine = engines["django"]
    return (
        _normalized(engine.from_string(DJANGO_HOME_LIST).render(context)),
        _normalized(engine.from_string(PORTAL_HOME_LIST).render(context)),
    )


@pytest.mark.parametrize("role", [*ROLE_GROUPS, "superuser"])
def test_the_sidebar_is_what_djangos_template_shows(role):
    load_defaults()
    users = get_user_model().objects
    if role == "superuser":
        user = users.create_superuser("nav-root", "r@example.com", "pw-nav-123!")
    else:
        user = users.create_user("nav-user", password="pw-nav-123!", is_staff=True)
        user.groups.add(Group.objects.get(name=role))
    # The last path again: the sidebar written for the first is reused, and still right.
    paths = ("/admin/", "/admin/incidents/incident/", "/admin/incidents/incident/7/change/")
    for path in (*paths, paths[0]):
        user = users.get(pk=user.pk)  # a new request: a fresh permission cache
        django_html, portal_html = _sidebars(user, path)
        assert portal_html == django_html
        assert ("current-model" in portal_html) == ("/incident/" in path)
        assert portal_html.count('<tr class="model-') >= 10
    django_html, portal_html = _home_lists(users.get(pk=user.pk))
    assert portal_html == django_html
    assert 'class="changelink"' in portal_html or 'class="viewlink"' in portal_html


def test_a_change_of_role_shows_in_the_sidebar_at_once(client):
    load_defaults()
    user = get_user_model().objects.create_user("nav-vera", password="pw-nav-123!", is_staff=True)
    user.groups.add(Group.objects.get(name="Viewers"))
    client.force_login(user)
    add_link = 'href="/admin/people/oncalloverride/add/" class="addlink"'
    page = client.get("/admin/audit/auditrecord/").content.decode()
    assert 'href="/admin/incidents/incident/"' in page
    assert add_link not in page

    user.groups.add(Group.objects.get(name="On-call engineers"))
    assert add_link in client.get("/admin/audit/auditrecord/").content.decode()

    user.groups.clear()
    page = client.get("/admin/").content.decode()
    assert 'href="/admin/incidents/incident/"' not in page
    assert 'class="app-api module' in page  # one's own API tokens: every staff user


def test_each_page_gets_its_own_copy_of_the_navigation():
    load_defaults()
    user = get_user_model().objects.create_superuser("nav-root", "r@example.com", "pw-nav-123!")
    request = RequestFactory().get("/admin/")
    request.user = user
    first = admin.site.get_app_list(request)
    first[0]["models"].clear()
    first.clear()
    again = admin.site.get_app_list(request)
    assert again and all(app["models"] for app in again)
