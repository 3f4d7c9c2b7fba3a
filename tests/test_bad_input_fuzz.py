"""Issue #17, kept that way: every admin form and custom admin view, fuzzed.

Discovered, not listed: every model registered on admin.site (its add form, and its change
form for the role matrix's world object of that model, inlines included) and every custom
admin URL the resolver knows (the patterns a ModelAdmin's get_urls() adds, plus the admin
pages outside the model admins). A new form or view is covered without a new test.

For each form the page is read as a browser would (its inputs, selects and textareas with
their values); then, for every field, a bounded set of hostile values is submitted, drawn
from each category below by a seeded generator (so a run is repeatable and every category
reaches every form), and one submission sets every field to the same hostile value at once.
Custom views get hostile ids and words in their URL and hostile values in each of their
form fields. Signed in as a superuser (the `client` fixture), each request runs in a
savepoint that is rolled back. Asserted: no server error (500 or an exception), and no
unescaped markup from the input in any page. All findings are listed together at the end.

Budget: FUZZ_VALUES_PER_FIELD values per field (default 2) keeps the run near 2 minutes on
two cores; the figure is printed (pytest -s) for the README.
"""

from __future__ import annotations

import os
import random
import re
import time
import zlib
from html.parser import HTMLParser

import pytest
from django.contrib import admin
from django.db import transaction
from django.test import override_settings
from django.urls import reverse

from tests.role_matrix_table import ROLE_MATRIX, SUPERUSER
from tests.role_matrix_world import World, _build_world
from tests.test_role_matrix import MATRIX_SETTINGS, Pattern, concrete_url, url_patterns

pytestmark = pytest.mark.django_db

MARKER = '<b data-fuzz="1">'
# A hostile value of each kind; one per kind is drawn for each field.
HOSTILE: dict[str, list[str]] = {
    "empty": ["", " ", "\t\n"],
    "long": ["x" * 20_000, "é" * 5_000, "9" * 4_000],
    "markup": [MARKER + "x", f'"><script>{MARKER}</script>', f"javascript:{MARKER}"],
    "unicode": [
        "\u202e\u200b\u01c5\U0001d518\u00f1\U0001f600",
        "\x01\x1b[31m\r\n\x7f",
        "\ud7ff\ufffe\uffff",
    ],
    "nul": ["\x00", "a\x00b", "2026-01-01\x00"],
    "number": [
        "99999999999999999999999",
        "-99999999999999999999999",
        "9223372036854775808",
        "2147483648",
        "-1",
        "1e309",
        "NaN",
        "-inf",
    ],
    "date": ["9999-12-31", "0001-01-01", "10000-01-01", "2026-02-30", "25:61:61", "-1-01-01"],
    "url": [
        "http://[::1",
        "http://host:99999/",
        "https://host:port/",
        "unix://" + "/" * 300,
        "tcp://[::1]:-1",
        "ssh://-oProxyCommand=x@host",
        "//",
    ],
    "id": ["abc", "99999999999999999999999", "-1", "0", "1.5", "\uff11", "1,2"],
    "json": [
        "[" * 5_000 + "]" * 5_000,
        '{"a":' * 3_000 + "1" + "}" * 3_000,
        '{"x": NaN}',
        '{"x": 1e309}',
        "{",
        '"\\ud800"',
    ],
}
VALUES_PER_FIELD = int(os.environ.get("FUZZ_VALUES_PER_FIELD", "2"))
SEED = int(os.environ.get("FUZZ_SEED", "17"))
# Management fields of inline formsets and the CSRF token: fuzzing them tests Django, and a
# broken management form is a 400/"ManagementForm data is missing" Django already handles.
# Only the first row of an inline is fuzzed (the others are the same fields again), and
# never the blank template row a browser fills in with JavaScript ("__prefix__").
SKIPPED_FIELDS = re.compile(
    r"(^csrfmiddlewaretoken$|-(TOTAL|INITIAL|MIN_NUM|MAX_NUM)_FORMS$|__prefix__|-[1-9][0-9]*-)"
)
# Views that end or replace the signed-in session itself, not forms about the portal's data.
SKIPPED_VIEWS = {"admin:logout", "admin:password_change", "admin:password_change_done"}
STANDARD_VIEW = re.compile(r"_(changelist|add|change|delete|history|autocomplete)$")


class FormReader(HTMLParser):
    """The fields a browser would submit from each POST form of a page: name -> values."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.forms: list[tuple[dict[str, list[str]], list[str]]] = []
        self._in_form = False
        self._select: str | None = None
        self._textarea: str | None = None
        self._text: list[str] = []

    @property
    def _fields(self) -> dict[str, list[str]]:
        return self.forms[-1][0]

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            # The search box is a GET form; the logout button a POST form of its own.
            action = a.get("action") or ""
            if (a.get("method") or "").lower() == "post" and "logout" not in action:
                self._in_form = True
                self.forms.append(({}, []))
            return
        name = a.get("name")
        if not self._in_form or (not name and tag != "option"):
            return
        if tag == "input":
            kind = (a.get("type") or "text").lower()
            if kind in ("submit", "button", "image", "reset", "file"):
                return
            self._name(name)
            if kind in ("checkbox", "radio"):
                if "checked" in a:
                    self._fields[name].append(a.get("value") or "on")
            else:
                self._fields[name].append(a.get("value") or "")
        elif tag == "select":
            self._select = name
            self._name(name)
        elif tag == "option" and self._select and "selected" in a:
            self._fields[self._select].append(a.get("value") or "")
        elif tag == "textarea":
            self._textarea, self._text = name, []
            self._name(name)

    def handle_endtag(self, tag):
        if tag == "form":
            self._in_form = False
        elif tag == "select":
            self._select = None
        elif tag == "textarea" and self._textarea:
            self._fields[self._textarea].append("".join(self._text).lstrip("\n"))
            self._textarea = None

    def handle_data(self, data):
        if self._textarea:
            self._text.append(data)

    def _name(self, name: str) -> None:
        if name not in self._fields:
            self._fields[name] = []
            self.forms[-1][1].append(name)


def read_form(html: str) -> tuple[dict[str, list[str]], list[str]]:
    """The page's main form (the POST form with the most fields) and its fuzzable names."""
    reader = FormReader()
    reader.feed(html)
    if not reader.forms:
        return {}, []
    fields, names = max(reader.forms, key=lambda form: len(form[1]))
    return fields, [n for n in names if not SKIPPED_FIELDS.search(n)]


def hostile_values(key: str) -> list[str]:
    """VALUES_PER_FIELD values for one field, each from a different category, chosen by a
    generator seeded with the field's key: repeatable, and different fields get different
    categories and variants so every category reaches every form."""
    chooser = random.Random(SEED * 1_000_003 + zlib.crc32(key.encode()))
    categories = chooser.sample(sorted(HOSTILE), k=min(VALUES_PER_FIELD, len(HOSTILE)))
    return [chooser.choice(HOSTILE[category]) for category in categories]


class Findings:
    def __init__(self, client, user):
        self.client, self.user = client, user
        self.problems: list[str] = []
        self.requests = 0
        self.seconds: dict[str, float] = {}

    def request(self, method: str, url: str, data=None, *, what: str) -> None:
        self.requests += 1
        if "_auth_user_id" not in self.client.session:
            self.client.force_login(self.user)
        with transaction.atomic():
            try:
                if method == "GET":
                    response = self.client.get(url, data or {})
                else:
                    response = self.client.post(url, data or {})
            except Exception as exc:  # the finding: a server error, with its type
                self.problems.append(f"{method} {url} {what}: {type(exc).__name__}: {exc}"[:400])
                transaction.set_rollback(True)
                return
            transaction.set_rollback(True)
        if response.status_code >= 500:
            self.problems.append(f"{method} {url} {what}: HTTP {response.status_code}")
        elif not response.streaming and MARKER.encode() in response.content:
            self.problems.append(f"{method} {url} {what}: the markup came back unescaped")

    def get_page(self, url: str) -> str | None:
        if "_auth_user_id" not in self.client.session:
            self.client.force_login(self.user)
        response = self.client.get(url)
        if response.status_code != 200 or response.streaming:
            return None
        return response.content.decode()


def fuzz_form(findings: Findings, url: str, what: str) -> int:
    """Every field of the form at `url` hostile in turn, then all of them at once."""
    started = time.monotonic()
    try:
        return _fuzz_form(findings, url, what)
    finally:
        findings.seconds[what] = time.monotonic() - started


def _fuzz_form(findings: Findings, url: str, what: str) -> int:
    page = findings.get_page(url)
    if page is None:
        return 0
    baseline, names = read_form(page)
    if not names:
        return 0
    for name in names:
        for value in hostile_values(f"{what}:{name}"):
            findings.request("POST", url, {**baseline, name: value}, what=f"{what} {name}")
    for category in sorted(HOSTILE):
        value = HOSTILE[category][0]
        findings.request(
            "POST", url, {**baseline, **dict.fromkeys(names, value)}, what=f"{what} all={category}"
        )
    return 1


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker, target_database_dsn, tmp_path_factory):
    media_root = tmp_path_factory.mktemp("fuzz-media")
    with (
        override_settings(
            MEDIA_ROOT=media_root,
            BACKUP_ROOT=tmp_path_factory.mktemp("fuzz-backups"),
            PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
            **MATRIX_SETTINGS,
        ),
        django_db_blocker.unblock(),
        transaction.atomic(),
    ):
        yield _build_world(target_database_dsn=target_database_dsn, media_root=media_root)
        transaction.set_rollback(True)


@pytest.fixture
def findings(world: World, client) -> Findings:
    client.raise_request_exception = True
    return Findings(client, world.users[SUPERUSER])


def custom_admin_patterns() -> list[Pattern]:
    """The admin URLs that are not a model admin's standard pages: the per-object workflow
    views (get_urls), the month view, exports, the two-factor reset..."""
    found = []
    for pattern in url_patterns():
        if not pattern.route.startswith("admin/") or pattern.key in SKIPPED_VIEWS:
            continue
        name = pattern.key.removeprefix("admin:")
        if STANDARD_VIEW.search(name) or pattern.route.startswith("admin/r/"):
            continue
        if "(?P<" in pattern.route or not pattern.key.startswith("admin:"):
            continue  # the catch-all and the app index: no form of their own
        found.append(pattern)
    return found


def test_every_admin_add_and_change_form_survives_hostile_values(world, findings, capsys):
    started = time.monotonic()
    forms = 0
    for model in admin.site._registry:
        info = model._meta.app_label, model._meta.model_name
        label = f"{info[0]}.{info[1]}"
        forms += fuzz_form(findings, reverse("admin:{}_{}_add".format(*info)), f"{label} add")
        if label in world.objects:
            change = reverse("admin:{}_{}_change".format(*info), args=[world.objects[label].pk])
            forms += fuzz_form(findings, change, f"{label} change")
        # The list's search, ordering, paging and filters from the query string.
        changelist = reverse("admin:{}_{}_changelist".format(*info))
        for category in sorted(HOSTILE):
            value = hostile_values(f"{label}:list:{category}")[0]
            findings.request(
                "GET",
                changelist,
                {"q": value, "o": value, "p": value, "id__exact": value},
                what=f"{label} list",
            )
    elapsed = time.monotonic() - started
    with capsys.disabled():
        print(
            f"\nfuzz: {forms} admin forms, {findings.requests} requests in {elapsed:.0f} s "
            f"({VALUES_PER_FIELD} values per field); slowest: "
            + ", ".join(
                f"{what} {seconds:.0f} s"
                for what, seconds in sorted(findings.seconds.items(), key=lambda i: -i[1])[:6]
            )
        )
    assert forms >= 40, forms  # discovery still finds the portal's forms
    assert not findings.problems, "\n".join(findings.problems)


def test_every_custom_admin_view_survives_hostile_ids_words_and_fields(world, findings, capsys):
    started = time.monotonic()
    patterns = custom_admin_patterns()
    for pattern in patterns:
        # A view whose words vary (the window's start, complete, log...) is asked with each.
        rows = ROLE_MATRIX.get(pattern.key)
        for variant in list(rows) if isinstance(rows, dict) else [None]:
            fuzz_custom_view(findings, pattern, concrete_url(pattern, world, variant))
    elapsed = time.monotonic() - started
    with capsys.disabled():
        print(
            f"\nfuzz: {len(patterns)} custom admin views, {findings.requests} requests "
            f"in {elapsed:.0f} s"
        )
    assert len(patterns) >= 15, [p.key for p in patterns]
    assert not findings.problems, "\n".join(findings.problems)


def fuzz_custom_view(findings: Findings, pattern: Pattern, url: str) -> None:
    # Hostile values in the URL's own parameters (ids, action words), one at a time;
    # the others keep their real values.
    route_parts = pattern.route.split("/")
    real_parts = url.lstrip("/").split("/")
    for index, part in enumerate(route_parts):
        if "<" not in part:
            continue
        for value in [*HOSTILE["id"], "%00", "..%2F..", "x" * 300]:
            parts = list(real_parts)
            parts[index] = re.sub(r"<[^>]+>", value, part)
            for method in ("GET", "POST"):
                findings.request(method, "/" + "/".join(parts), what=f"{pattern.key} url")
    # Hostile query strings (?month=, ?target=, filters of an export).
    for category in sorted(HOSTILE):
        value = hostile_values(f"{pattern.key}:query:{category}")[0]
        findings.request(
            "GET",
            url,
            {"month": value, "target": value, "q": value, "actor__id__exact": value},
            what=f"{pattern.key} query",
        )
    # The view's own form, field by field; and a POST of nothing but hostile names.
    fuzz_form(findings, url, pattern.key)
    for category in sorted(HOSTILE):
        value = HOSTILE[category][0]
        findings.request(
            "POST",
            url,
            dict.fromkeys(("text", "reason", "runbook", "target", "confirm", "parameters"), value),
            what=f"{pattern.key} post={category}",
        )


# --- extreme but valid rows ------------------------------------------------------------------

# Text whose format a field checks (rules, addresses, zones, lists of hours): an extreme value
# of these is an invalid one, which the forms above cover.
FORMATTED = {
    "rrule",
    "time_zone",
    "timezone",
    "base_url",
    "url",
    "emails",
    "announce_lead_hours",
    "token",
    "minute",
    "hour",
    "day_of_month",
    "month_of_year",
    "day_of_week",
    "password",
    "username",
    "email",
    "pager_email",
    "task",
    "operation_kind",
    "kind",
    "fingerprint",
}


def extreme_values(model) -> dict:
    """The longest text and the largest number each plain field of `model` accepts."""
    from django.core.validators import MaxValueValidator
    from django.db import connection, models

    secret = set(getattr(model, "SECRET_FIELDS", ()))
    values = {}
    for field in model._meta.concrete_fields:
        if (
            field.primary_key
            or field.is_relation
            or field.choices
            or field.name in FORMATTED | secret
            or field.get_internal_type() == "JSONField"
        ):
            continue
        limits = [v.limit_value for v in field.validators if isinstance(v, MaxValueValidator)]
        if isinstance(field, models.CharField) and field.max_length:
            values[field.name] = (MARKER + "W" * field.max_length)[: field.max_length]
        elif isinstance(field, models.TextField):
            values[field.name] = MARKER + "line of text\n" * ((field.max_length or 10_000) // 14)
        elif isinstance(field, models.IntegerField):
            top = connection.ops.integer_field_range(field.get_internal_type())[1]
            values[field.name] = min([*limits, top or 2**31 - 1])
        elif isinstance(field, models.FloatField):
            values[field.name] = min([*limits, 1e15])
    return values


def test_extreme_but_valid_rows_render_in_lists_change_pages_and_the_overview(
    world, findings, capsys
):
    updated = []
    with transaction.atomic():
        for model in admin.site._registry:
            label = f"{model._meta.app_label}.{model._meta.model_name}"
            if label not in world.objects:
                continue
            for name, value in extreme_values(model).items():
                try:
                    with transaction.atomic():
                        model._default_manager.filter(pk=world.objects[label].pk).update(
                            **{name: value}
                        )
                except Exception:  # noqa: S112 - a value its own constraint refuses is not valid
                    continue
                updated.append(f"{label}.{name}")
        findings.client.force_login(findings.user)
        pages = [reverse("admin:index")]
        for model in admin.site._registry:
            info = model._meta.app_label, model._meta.model_name
            pages.append(reverse("admin:{}_{}_changelist".format(*info)))
            if "{}.{}".format(*info) in world.objects:
                obj = world.objects["{}.{}".format(*info)]
                pages.append(reverse("admin:{}_{}_change".format(*info), args=[obj.pk]))
        for page in pages:
            findings.request("GET", page, what="extreme row")
        index = findings.client.get(reverse("admin:index")).content.decode()
        transaction.set_rollback(True)
    with capsys.disabled():
        print(f"\nextreme rows: {len(updated)} fields set, {len(pages)} pages rendered")
    assert len(updated) > 50, updated
    assert "Could not be shown just now" not in index
    assert not findings.problems, "\n".join(findings.problems)
