"""The admin changelists' rows, written in one pass per row.

Django's `items_for_result` works out, for every cell of every row, what the column is (a
model field, an admin method, a model attribute), its label, its empty value and, for the
link column, reverses the change URL and re-parses the preserved filters; then the stock
template loops over the cells. On a 100-row audit list that is about half of a worker's CPU
for the page. Here each column is worked out once per page (`ColumnPlan`), the change URL is
reversed once with a placeholder, and a row is one string. The markup is Django's own
(`tests/test_admin_rows.py` compares both writers on every registered changelist).

Changelists with editable rows (`list_editable`) keep Django's writer: their cells are form
widgets."""

from __future__ import annotations

import contextlib
import datetime
import enum
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.contrib.admin.templatetags.admin_list import (
    ResultList,
    _coerce_field_name,
    result_headers,
    result_hidden_fields,
    results,
)
from django.contrib.admin.templatetags.admin_urls import add_preserved_filters
from django.contrib.admin.utils import display_for_field, display_for_value, lookup_field, quote
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import FieldDoesNotExist, ObjectDoesNotExist
from django.db import models
from django.db.models import ManyToOneRel
from django.urls import NoReverseMatch, reverse
from django.utils import dateformat, formats, timezone
from django.utils.html import conditional_escape, escape
from django.utils.safestring import SafeString, mark_safe

_PK_PLACEHOLDER = "0pk0placeholder0"
# A quoted primary key made only of these characters reads the same in a URL as reversed.
_URL_SAFE_PK = re.compile(r"[A-Za-z0-9_.~-]+")
# Date format characters that show seconds or finer (c and r include seconds; U is the
# epoch) or the zone, which can differ between two instants of the same local minute.
_FINER_THAN_MINUTES = {"s", "u", "v", "U", "c", "r", "e", "I", "O", "T", "Z"}


class Kind(enum.Enum):
    FIELD = "a model field, shown through display_for_field"
    RELATION = "a foreign key or one-to-one field, shown as the related object's str()"
    AUTO = "an auto-created field such as the primary key, shown through display_for_value"
    CALLABLE = "an admin method or a function, called with the row"
    GENERIC = "a model attribute, property or reverse relation: Django's lookup_field"


@dataclass
class ColumnPlan:
    """How one list_display column is read and shown, decided once per page."""

    name: Any
    kind: Kind
    classes: str  # the cell's class names before per-value additions
    is_link: bool
    field: models.Field | None
    read: Callable[[Any], Any] | None
    empty: str  # the column's own empty value (an admin method may set one)
    default_empty: str  # the admin's, shown when a related row does not exist
    boolean: bool
    datetime_format: str | None  # the localized format, for a plain DateTimeField
    choices: dict | None  # value -> label (translated once per page), for a field with choices
    # Formatted datetimes by minute, when the format shows nothing finer than minutes
    # (Django's "N j, Y, P" does not): rows written in the same minute share one formatting.
    by_minute: dict | None = None


def _link_in_column(is_first: bool, name: Any, cl: ChangeList) -> bool:
    if cl.list_display_links is None:
        return False
    if is_first and not cl.list_display_links:
        return True
    return name in cl.list_display_links


def _model_field(cl: ChangeList, name: Any) -> models.Field | None:
    """The field lookup_field would use for the column, or None (as _get_non_gfk_field)."""
    if not isinstance(name, str):
        return None
    try:
        field = cl.lookup_opts.get_field(name)
    except FieldDoesNotExist:
        return None
    if field.is_relation and ((field.many_to_one and not field.related_model) or field.one_to_many):
        return None  # generic foreign keys and reverse relations
    if field.is_relation and not field.many_to_many and getattr(field, "attname", None) == name:
        return None  # "team_id" is read as an attribute, not coerced to the relation
    return field


def _plan(cl: ChangeList, index: int, name: Any, is_first: bool) -> ColumnPlan:
    model_admin = cl.model_admin
    default_empty = empty = model_admin.get_empty_value_display()
    classes = f"field-{_coerce_field_name(name, index)}"
    field = _model_field(cl, name)
    read = None
    if field is not None:
        if field.auto_created:
            kind = Kind.GENERIC if field.is_relation else Kind.AUTO
        elif isinstance(field.remote_field, ManyToOneRel):
            kind = Kind.RELATION
        else:
            kind = Kind.FIELD
    elif callable(name):
        kind, read = Kind.CALLABLE, name
    elif isinstance(name, str) and name != "__str__" and hasattr(model_admin, name):
        kind, read = Kind.CALLABLE, getattr(model_admin, name)
    else:
        kind = Kind.GENERIC
    if read is not None:
        empty = getattr(read, "empty_value_display", empty)
    if (field is None or field.auto_created) and name == "action_checkbox":
        classes = "action-checkbox"
    datetime_format = None
    if (
        kind is Kind.FIELD
        and isinstance(field, models.DateTimeField)
        and not getattr(field, "flatchoices", None)
    ):
        datetime_format = formats.get_format("DATETIME_FORMAT")
    by_minute = None
    if datetime_format is not None:
        tokens = set(dateformat.re_formatchars.split(datetime_format)[1::2])
        by_minute = None if tokens & _FINER_THAN_MINUTES else {}
    choices = None
    if kind is Kind.FIELD and getattr(field, "flatchoices", None):
        with contextlib.suppress(TypeError):  # unhashable choices: display_for_field copes
            choices = {value: str(label) for value, label in field.flatchoices}
    return ColumnPlan(
        name=name,
        kind=kind,
        classes=classes,
        is_link=_link_in_column(is_first, name, cl),
        field=field,
        read=read,
        empty=empty,
        default_empty=default_empty,
        boolean=bool(getattr(read, "boolean", False)),
        datetime_format=datetime_format,
        choices=choices,
        by_minute=by_minute,
    )


class RowWriter:
    """Writes a changelist's rows as Django's items_for_result would, cell for cell."""

    def __init__(self, cl: ChangeList) -> None:
        self.cl = cl
        self.columns: list[ColumnPlan] = []
        first_link_pending = True
        for index, name in enumerate(cl.list_display):
            plan = _plan(cl, index, name, first_link_pending)
            if plan.is_link:
                first_link_pending = False
            self.columns.append(plan)
        self.pk_attname = str(cl.to_field) if cl.to_field else cl.lookup_opts.pk.attname
        self._url_template = self._change_url_template()

    def _change_url_template(self) -> tuple[str, str] | None:
        """The change URL with its preserved filters, split around the primary key; None
        when the ChangeList links its rows its own way (url_for_result overridden)."""
        cl = self.cl
        if type(cl).url_for_result is not ChangeList.url_for_result:
            return None
        try:
            url = reverse(
                f"admin:{cl.opts.app_label}_{cl.opts.model_name}_change",
                args=(_PK_PLACEHOLDER,),
                current_app=cl.model_admin.admin_site.name,
            )
        except NoReverseMatch:
            return None
        url = add_preserved_filters(
            {"preserved_filters": cl.preserved_filters, "opts": cl.opts}, url
        )
        before, found, after = url.partition(_PK_PLACEHOLDER)
        return (before, after) if found and _PK_PLACEHOLDER not in after else None

    def _change_url(self, result: models.Model) -> str | None:
        cl = self.cl
        pk = quote(getattr(result, cl.pk_attname))
        if self._url_template is not None and _URL_SAFE_PK.fullmatch(str(pk)):
            before, after = self._url_template
            return f"{before}{pk}{after}"
        try:
            url = cl.url_for_result(result)
        except NoReverseMatch:
            return None
        return add_preserved_filters(
            {"preserved_filters": cl.preserved_filters, "opts": cl.opts}, url
        )

    def _cell(self, plan: ColumnPlan, result: models.Model) -> tuple[Any, str]:
        """The cell's shown value (escaped later unless safe) and its class names."""
        kind, classes = plan.kind, plan.classes
        if kind is Kind.GENERIC:
            return self._generic_cell(plan, result)
        try:
            if kind is Kind.CALLABLE:
                value = plan.read(result)
            elif kind is Kind.RELATION:
                related = getattr(result, plan.field.name)
                return (plan.empty if related is None else related), classes + " nowrap"
            else:
                value = getattr(result, plan.field.name)
        except ObjectDoesNotExist:
            return plan.default_empty, classes
        if isinstance(value, str) and value.strip() == "":
            value = ""
        if kind is not Kind.FIELD:
            if isinstance(value, datetime.date | datetime.time):
                classes += " nowrap"
            return display_for_value(value, plan.empty, plan.boolean), classes
        field = plan.field
        if isinstance(field, models.DateField | models.TimeField):
            classes += " nowrap"
        if plan.choices is not None:
            try:
                return plan.choices.get(value, plan.empty), classes
            except TypeError:
                pass  # an unhashable value: display_for_field's own fallback
        elif plan.datetime_format is not None and value is not None:
            return self._datetime(plan, value), classes
        return display_for_field(value, field, plan.empty, avoid_link=plan.is_link), classes

    @staticmethod
    def _datetime(plan: ColumnPlan, value: datetime.datetime) -> str:
        local = timezone.template_localtime(value)
        if plan.by_minute is None:
            return dateformat.format(local, plan.datetime_format)
        minute = local.replace(second=0, microsecond=0)
        shown = plan.by_minute.get(minute)
        if shown is None:
            shown = plan.by_minute[minute] = dateformat.format(local, plan.datetime_format)
        return shown

    def _generic_cell(self, plan: ColumnPlan, result: models.Model) -> tuple[Any, str]:
        """Model attributes, properties and reverse relations: Django's own path."""
        classes = plan.classes
        try:
            field, attr, value = lookup_field(plan.name, result, self.cl.model_admin)
        except ObjectDoesNotExist:
            return plan.default_empty, classes
        empty = getattr(attr, "empty_value_display", plan.default_empty)
        if isinstance(value, str) and value.strip() == "":
            value = ""
        if field is None or field.auto_created:
            boolean = getattr(attr, "boolean", False)
            if isinstance(attr, property) and hasattr(attr, "fget"):
                boolean = getattr(attr.fget, "boolean", False)
            if isinstance(value, datetime.date | datetime.time):
                classes += " nowrap"
            return display_for_value(value, empty, boolean), classes
        if isinstance(field.remote_field, ManyToOneRel):
            related = getattr(result, field.name)
            shown = empty if related is None else related
        else:
            shown = display_for_field(value, field, empty, avoid_link=plan.is_link)
        if isinstance(field, models.DateField | models.TimeField | models.ForeignKey):
            classes += " nowrap"
        return shown, classes

    def row(self, result: models.Model) -> SafeString:
        cells = []
        first = True
        for plan in self.columns:
            shown, classes = self._cell(plan, result)
            text = conditional_escape(shown)
            if plan.is_link:
                tag = "th" if first else "td"
                first = False
                url = self._change_url(result)
                if url is not None:
                    popup = ""
                    if self.cl.is_popup:
                        value = result.serializable_value(self.pk_attname)
                        popup = f' data-popup-opener="{conditional_escape(value)}"'
                    text = f'<a href="{escape(url)}"{popup}>{text}</a>'
                cells.append(f'<{tag} class="{classes}">{text}</{tag}>')
            else:
                cells.append(f'<td class="{classes}">{text}</td>')
        return mark_safe("".join(cells))  # noqa: S308 every value above is escaped


def result_list(cl: ChangeList) -> dict:
    """The context of admin/change_list_results.html, as Django's result_list gives it."""
    headers = list(result_headers(cl))
    context = {
        "cl": cl,
        "result_hidden_fields": list(result_hidden_fields(cl)),
        "result_headers": headers,
        "num_sorted_fields": sum(1 for h in headers if h["sortable"] and h["sorted"]),
    }
    if cl.formset:
        context["results"] = list(results(cl))
    else:
        writer = RowWriter(cl)
        context["results"] = [ResultList(None, [writer.row(r)]) for r in cl.result_list]
    return context
