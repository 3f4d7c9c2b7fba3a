"""The admin's sidebar, rendered in Python.

Django's admin/app_list.html renders every model of every app through the template engine
on every page (a `{% with %}`, three `urlencode` filters and three translations per model:
about 6 ms of a worker's CPU per page with the portal's sixty-odd models). This tag writes
the same markup (the template with show_changelinks=False, as the sidebar uses it) in one
pass."""

from __future__ import annotations

from urllib.parse import quote

from django import template
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext

register = template.Library()


@register.simple_tag(takes_context=True)
def navigation_app_list(context) -> SafeString:
    app_list = context.get("available_apps") or []
    if not app_list:
        return format_html(
            "<p>{}</p>",
            gettext("You don’t have permission to view or edit anything."),  # noqa: RUF001 Django's msgid
        )
    request = context.get("request")
    path = quote(request.path, safe="/") if request is not None else ""
    headings = format_html(
        '<thead class="visually-hidden"><tr><th scope="col">{}</th><th scope="col">{}</th>'
        '<th scope="col">{}</th></tr></thead>',
        gettext("Model name"),
        gettext("Add link"),
        gettext("Change or view list link"),
    )
    add = gettext("Add")
    return format_html_join("", "{}", ((_app(app, path, headings, add),) for app in app_list))


def _app(app: dict, path: str, headings: SafeString, add: str) -> SafeString:
    label = app["app_label"]
    rows = format_html_join(
        "", "{}", ((_model(label, model, path, add),) for model in app["models"])
    )
    return format_html(
        '<div class="app-{} module{}"><table><caption><a href="{}" class="section" title="{}">{}'
        "</a></caption>{}{}</table></div>",
        label,
        " current-app" if app["app_url"] in path else "",
        app["app_url"],
        gettext("Models in the %(name)s application") % {"name": app["name"]},
        app["name"],
        headings,
        rows,
    )


def _model(label: str, model: dict, path: str, add: str) -> SafeString:
    name = model["object_name"].lower()
    row_id = f"{label}-{name}"
    admin_url = model.get("admin_url")
    current = bool(admin_url) and admin_url in path
    if admin_url:
        link = format_html(
            '<a href="{}"{}>{}</a>',
            admin_url,
            mark_safe(' aria-current="page"') if current else "",
            model["name"],
        )
    else:
        link = format_html("{}", model["name"])
    add_url = model.get("add_url")
    add_cell = (
        format_html(
            '<td><a href="{}" class="addlink" aria-describedby="{}">{}</a></td>',
            add_url,
            row_id,
            add,
        )
        if add_url
        else mark_safe("<td></td>")
    )
    return format_html(
        '<tr class="model-{}{}"><th scope="row" id="{}">{}</th>{}</tr>',
        name,
        " current-model" if current else "",
        row_id,
        link,
        add_cell,
    )
