from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.text import get_text_list

from opsportal.admin_mixins import ReadOnlyAdminMixin
from opsportal.converters import id_or_404
from opsportal.systems.admin_secrets import SecretFieldsAdminMixin
from opsportal.systems.fields import secret_field_names
from opsportal.systems.forms import secrets_form_for
from opsportal.systems.models import (
    DockerEngine,
    HttpEndpoint,
    PostgresDatabase,
    RedisCache,
    System,
)
from opsportal.systems.services import system_save, system_test_connection


class SystemAdminBase(SecretFieldsAdminMixin, admin.ModelAdmin):
    list_display = ["name", "status", "last_check_message", "last_checked_at", "critical"]
    list_filter = ["critical", "last_check_ok"]
    search_fields = ["name", "description"]
    readonly_fields = ["status", "last_checked_at", "last_check_message", "last_check_duration_ms"]
    change_form_template = "admin/systems/change_form.html"
    list_select_related = ["docker_engine"]

    def __init__(self, model, admin_site):
        # Fixed per kind, so the secrets mixin's get_fieldsets() can adapt them per user.
        connection = []
        secrets = secret_field_names(model)
        for field in model._meta.local_fields:
            if field.editable and not field.auto_created and not field.remote_field:
                connection.append(field.name)
                if field.name in secrets:
                    connection.append(f"clear_{field.name}")
        self.fieldsets = [
            (None, {"fields": ["name", "description", "critical", "check_interval_seconds"]}),
            ("Connection", {"fields": connection}),
            ("Runs in a container", {"fields": ["docker_engine", "container_name"]}),
            ("Last check", {"fields": self.readonly_fields}),
        ]
        super().__init__(model, admin_site)

    def save_model(self, request, obj, form, change):
        system_save(system=obj, actor=request.user)
        if obj.secrets_dropped:
            self.message_user(request, secrets_dropped_message(obj), messages.WARNING)
        for name, dropped in getattr(obj, "dependents_secrets_dropped", {}).items():
            self.message_user(
                request,
                f"The stored {', '.join(dropped)} of {name}, which runs on {obj}, "
                f"{'was' if len(dropped) == 1 else 'were'} dropped because the engine's "
                "connection changed: enter it again on its page.",
                messages.WARNING,
            )

    @admin.display(description="Status")
    def status(self, system):
        if system.last_check_ok is None:
            return "not checked yet"
        css, word = ("status-ok", "OK") if system.last_check_ok else ("status-failing", "FAILING")
        return format_html('<strong class="{}">{}</strong>', css, word)

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "<id:object_id>/test-connection/",
                self.admin_site.admin_view(self.test_connection_view),
                name="{}_{}_test_connection".format(*info),
            ),
            *super().get_urls(),
        ]

    def test_connection_view(self, request, object_id):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        system = get_object_or_404(self.model, pk=object_id)
        if not self.has_view_permission(request, system) or not request.user.has_perm(
            "systems.test_connection"
        ):
            raise PermissionDenied
        check = system_test_connection(system=system, actor=request.user)
        level = messages.SUCCESS if check.ok else messages.ERROR
        verdict = "Connection OK" if check.ok else "Connection failed"
        self.message_user(
            request, f"{verdict} ({check.duration_ms:.0f} ms): {check.message}", level
        )
        info = self.opts.app_label, self.opts.model_name
        return HttpResponseRedirect(reverse("admin:{}_{}_change".format(*info), args=[system.pk]))


def secrets_dropped_message(system: System) -> str:
    """Says which stored secrets a save dropped, and why (re-pointing without them)."""
    names = [str(system._meta.get_field(n).verbose_name) for n in system.secrets_dropped]
    changed = [str(system._meta.get_field(n).verbose_name) for n in system.repointed_fields]
    one = len(names) == 1
    return (
        f"The stored {get_text_list(names, 'and')} of {system} {'was' if one else 'were'} "
        f"dropped because the {get_text_list(changed, 'and')} changed and "
        f"{'it was' if one else 'they were'} not entered again: the portal does not send "
        f"{'a secret' if one else 'secrets'} to a new address unless you type "
        f"{'it' if one else 'them'} in with the change."
    )


@admin.register(DockerEngine)
class DockerEngineAdmin(SystemAdminBase):
    form = secrets_form_for(DockerEngine)
    list_display = ["name", "base_url", *SystemAdminBase.list_display[1:]]
    # The check's message says when another registration has the same engine ID.
    readonly_fields = [*SystemAdminBase.readonly_fields, "engine_id"]


@admin.register(PostgresDatabase)
class PostgresDatabaseAdmin(SystemAdminBase):
    form = secrets_form_for(PostgresDatabase)
    list_display = ["name", "host", "port", "dbname", *SystemAdminBase.list_display[1:]]


@admin.register(RedisCache)
class RedisCacheAdmin(SystemAdminBase):
    form = secrets_form_for(RedisCache)
    list_display = ["name", "host", "port", "db", *SystemAdminBase.list_display[1:]]


@admin.register(HttpEndpoint)
class HttpEndpointAdmin(SystemAdminBase):
    form = secrets_form_for(HttpEndpoint)
    list_display = ["name", "url", *SystemAdminBase.list_display[1:]]


@admin.register(System)
class SystemAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """All systems in one list; each row links to its kind's page."""

    list_display = ["name", "kind", "status", "last_check_message", "last_checked_at"]
    list_filter = ["kind", "critical", "last_check_ok"]
    search_fields = ["name", "description"]
    status = SystemAdminBase.status

    def change_view(self, request, object_id, form_url="", extra_context=None):
        system = get_object_or_404(System, pk=id_or_404(object_id))
        return HttpResponseRedirect(system.get_admin_url())
