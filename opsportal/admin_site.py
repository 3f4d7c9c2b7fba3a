"""The portal's admin site: Django's own, with the navigation built once per permission set.

Every admin page shows the sidebar of every app and model the user may reach. Django builds
that list on each request (a permission check per model and action, two URL reversals per
model: about 5 ms of a worker's CPU per page, twice on the home page). What it holds
depends only on the user's permissions (the ModelAdmins' has_*_permission methods here
read nothing else: is_active, is_staff, is_superuser and has_perm), so it is built once
per permission set, language and URL prefix and copied out per request."""

from __future__ import annotations

import threading

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.urls import get_script_prefix
from django.utils.translation import get_language

NAVIGATION_CACHE_SIZE = 64


class PortalAdminSite(admin.AdminSite):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._navigation: dict[tuple, list[dict]] = {}
        self._navigation_lock = threading.Lock()

    def get_app_list(self, request, app_label=None):
        key = None if app_label else self._navigation_key(request)
        if key is None:
            return super().get_app_list(request, app_label)
        app_list = self._navigation.get(key)
        if app_list is None:
            app_list = super().get_app_list(request)
            with self._navigation_lock:
                if len(self._navigation) >= NAVIGATION_CACHE_SIZE:
                    self._navigation.clear()
                self._navigation[key] = app_list
        # Copies: a caller that adds to or sorts its list never changes another page's.
        return [{**app, "models": [dict(model) for model in app["models"]]} for app in app_list]

    @staticmethod
    def _navigation_key(request) -> tuple | None:
        user = getattr(request, "user", None)
        if user is None or not (user.is_active and user.is_staff):
            return None
        permissions = frozenset() if user.is_superuser else frozenset(user.get_all_permissions())
        return (user.is_superuser, permissions, get_script_prefix(), get_language())

    def register(self, *args, **kwargs) -> None:
        super().register(*args, **kwargs)
        self._navigation.clear()

    def unregister(self, *args, **kwargs) -> None:
        super().unregister(*args, **kwargs)
        self._navigation.clear()


class PortalAdminConfig(AdminConfig):
    """django.contrib.admin with the portal's site (INSTALLED_APPS names this)."""

    default_site = "opsportal.admin_site.PortalAdminSite"
