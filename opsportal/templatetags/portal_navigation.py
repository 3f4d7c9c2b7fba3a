"""The admin's app lists, rendered in Python: the sidebar on every page, and the home page's
list with its change and view links.

Django's admin/app_list.html renders every model of every app through the template engine
on every page (a `{% with %}`, three `urlencode` filters and three translations per model:
about 6 ms of a worker's CPU per page with the portal's sixty-odd models, 9 ms on the home
page, which shows it twice). This tag writes the same markup in one pass:
`{% navigation_app_list %}` as the sidebar includes the template (show_changelinks=False,
the context's available_apps), `{% navigation_app_list app_list show_changelinks=True %}` as
the home page does. What it writes is kept per list, language and the app and model the path
is under, so a permission set's sidebar is written once per model, not once per page (~2 ms
of a small page's ~10 ms)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from urllib.parse import quote

from django import template
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import get_language, gettext

register = template.Library()


@register.simple_tag(takes_context=True)
def navigation_app_list(context, app_list=None, show_changelinks=False) -> SafeString:
    if app_list is None:
        app_list = context.get("available_apps") or []
    if not app_list:
        return format_html(
            "<p>{}</p>",
            gettext("You don’t have permission to view or edit anything."),  # noqa: RUF001 Django's msgid
        )
    request = context.get("request")
    path = quote(request.path, safe="/") if request is not None else ""
    # The markup depends only on the list, the language, and which app and model URLs the
    # path is under: written once per such combination (a permission set's sidebar is the
    # same on every page of one model).
    key = (
        get_language(),
        show_changelinks,
        tuple(
            (
                app["app_label"],
                str(app["name"]),
                app["app_url"],
                app["app_url"] in path,
                tuple(
                    (
                        model["object_name"],
                        str(model["name"]),
                        model.get("admin_url"),
                        model.get("add_url"),
                        model.get("view_only"),
                        bool(model.get("admin_url")) and model["admin_url"] in path,
                    )
                    for model in app["models"]
                ),
            )
            for app in app_list
        ),
    )
    with _written_lock:
        html = _written.get(key)
        if html is not None:
            _written.move_to_end(key)
            return html
    html = _write(app_list, path, show_changelinks)
    with _written_lock:
        _written[key] = html
        while len(_written) > WRITTEN_CACHE_SIZE:
            _written.popitem(last=False)  # the least recently used
    return html


# Written app lists by (language, change links, the list with what the path is under), the
# least recently used dropped first: each entry (its key and markup) takes 15-30 kB with
# the portal's sixty-odd models, so at most ~8 MB a process (five role groups' sidebars on
# every model's pages would be about 300: the most used are kept).
WRITTEN_CACHE_SIZE = 256
_written: OrderedDict[tuple, SafeString] = OrderedDict()
_written_lock = threading.Lock()


def _write(app_list: list[dict], path: str, show_changelinks: bool) -> SafeString:
    headings = format_html(
        '<thead class="visually-hidden"><tr><th scope="col">{}</th><th scope="col">{}</th>'
        '<th scope="col">{}</th></tr></thead>',
        gettext("Model name"),
        gettext("Add link"),
        gettext("Change or view list link"),
    )
    words = {"add": gettext("Add"), "change": gettext("Change"), "view": gettext("View")}
    return format_html_join(
        "",
        "{}",
        ((_app(app, path, headings, words, show_changelinks),) for app in app_list),
    )


def _app(
    app: dict, path: str, headings: SafeString, words: dict[str, str], show_changelinks: bool
) -> SafeString:
    label = app["app_label"]
    rows = format_html_join(
        "",
        "{}",
        ((_model(label, model, path, words, show_changelinks),) for model in app["models"]),
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


def _model(
    label: str, model: dict, path: str, words: dict[str, str], show_changelinks: bool
) -> SafeString:
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
            words["add"],
        )
        if add_url
        else mark_safe("<td></td>")
    )
    change_cell = mark_safe("")
    if show_changelinks and admin_url:
        kind = "view" if model.get("view_only") else "change"
        change_cell = format_html(
            '<td><a href="{}" class="{}link" aria-describedby="{}">{}</a></td>',
            admin_url,
            kind,
            row_id,
            words[kind],
        )
    elif show_changelinks:
        change_cell = mark_safe("<td></td>")
    return format_html(
        '<tr class="model-{}{}"><th scope="row" id="{}">{}</th>{}{}</tr>',
        name,
        " current-model" if current else "",
        row_id,
        link,
        add_cell,
        change_cell,
    )
