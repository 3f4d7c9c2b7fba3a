"""The role matrix: who may reach every URL the portal serves.

For anonymous visitors, each seeded role group from `load_defaults` and a superuser, every
URL pattern the resolver knows is requested with GET, and every view that changes something
with a minimal POST, against real objects of every model. What each role may do is declared
once, in ROLE_MATRIX (tests/role_matrix_table.py); the expected status is derived from it,
and for a model's list the admin actions each role is offered too. A URL pattern with no row fails
`test_every_url_pattern_has_a_row`, so a new view must say who may use it.

Where today's code lets a role do what it should not, the row declares the secure
expectation and says which hole it is (so it fails until the fix is merged); rows marked
FINDING record a role that cannot do what its permissions suggest.

The objects are built once for the module (inside a transaction rolled back at the end) and
each request runs in a savepoint that is rolled back, so a POST that one role may make
changes nothing another role's request sees. Systems point at closed local ports, webhooks
at a closed port too, so nothing a POST sets off can reach a real system.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from django.contrib import messages
from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.test import Client, override_settings
from django.urls import URLPattern, URLResolver, get_resolver

from tests.role_matrix_table import (
    ANONYMOUS,
    LOGIN,
    MESSAGE,
    NOBODY,
    POST_ONLY,
    ROLE_MATRIX,
    ROLES,
    Access,
    model_pages,
)
from tests.role_matrix_world import World, _build_world

# --- walking the resolver and filling in each pattern -------------------------------------


@dataclass(frozen=True)
class Pattern:
    key: str  # "namespace:name", or the route for a pattern without a name
    route: str


def url_patterns() -> list[Pattern]:
    def walk(patterns, prefix="", namespace=""):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                inner = ":".join(n for n in (namespace, pattern.namespace or "") if n)
                yield from walk(pattern.url_patterns, prefix + str(pattern.pattern), inner)
            elif isinstance(pattern, URLPattern):
                route = prefix + str(pattern.pattern)
                if pattern.name:
                    key = f"{namespace}:{pattern.name}" if namespace else pattern.name
                else:
                    key = route
                yield Pattern(key, route)

    return list(walk(get_resolver().url_patterns))


# Which value fills a parameter that names an action, per pattern.
ACTIONS = {
    "admin:incidents_incident_transition": "acknowledge",
    "admin:maintenance_maintenancewindow_step": "done",
}
_PARAMETER = re.compile(r"<(?:(?P<converter>\w+):)?(?P<name>\w+)>|\(\?P<(?P<group>\w+)>[^)]*\)")


def concrete_url(pattern: Pattern, world: World, variant: str | None = None) -> str:
    """The pattern's URL with each parameter set to a real object (or value) of the world."""
    parts = pattern.route.split("/")
    label = f"{parts[1]}.{parts[2]}" if len(parts) > 2 else ""
    if pattern.route.startswith("api/v1/"):
        # A session is no credential for the API: refused before any object is looked up.
        return "/" + _PARAMETER.sub("1", pattern.route).replace("^", "").replace("$", "")
    if pattern.route.startswith("admin/r/"):  # "view on site", asked for the incident
        label = "incidents.incident"

    def value(match: re.Match) -> str:
        name = match.group("name") or match.group("group")
        if variant is not None and name in ("app_label", "action"):
            return variant
        if name in ("object_id", "pk"):
            if label not in world.objects:
                raise AssertionError(
                    f"{pattern.key}: the world has no {label or pattern.route} object; create "
                    "one in _build_world (through its service) and add it to `objects`"
                )
            return str(world.objects[label].pk)
        if name == "content_type_id":
            return str(ContentType.objects.get_for_model(world.objects[label]).pk)
        if name == "incident_id":  # the status page's page of a published incident
            return str(world.objects["incidents.incident"].pk)
        if name == "signed":  # a confirmation link that is not one
            return "not-a-signed-link"
        if name == "step_id":
            step = world.incident_step if parts[1] == "incidents" else world.window_step
            return str(step.pk)
        if name == "evidence_id":
            return str(world.evidence.pk)
        if name == "action":
            return ACTIONS[pattern.key]
        if name == "id":  # a user's password page
            return str(world.objects["auth.user"].pk)
        if name == "token":
            if pattern.key == "incidents:acknowledge_link":
                return world.acknowledge_token
            if pattern.key == "people:shift_feed":
                return world.shift_calendar_token
            return world.calendar_token
        if name == "incident_id":
            return str(world.objects["incidents.incident"].pk)
        if name == "url":  # the admin's catch-all
            return "no-such-page/"
        raise AssertionError(
            f"{pattern.key}: no value for the parameter {name!r}; say which in concrete_url"
        )

    url = _PARAMETER.sub(value, pattern.route)
    url = url.replace("^", "").replace("$", "").replace("\\Z", "")
    return "/" + url


# --- asking as each role --------------------------------------------------------------------


def outcome(response) -> int | str:
    """What a response means for access: its status, "login" for a redirect to the login
    page, "message" for a redirect carrying a permission refusal."""
    if response.status_code in (301, 302):
        if response["Location"].startswith("/admin/login/"):
            return LOGIN
        refusals = [
            m
            for m in messages.get_messages(response.wsgi_request)
            if m.level == messages.ERROR and "permission" in str(m)
        ]
        if refusals:
            return MESSAGE
    return response.status_code


def expected(access: Access, role: str, method: str) -> tuple[int | str, ...] | None:
    if method == "POST" and access.post is None:
        return None
    allowed = access.get if method == "GET" else access.post
    if allowed == POST_ONLY:
        return (LOGIN,) if role == ANONYMOUS and access.login else (405,)
    if role == ANONYMOUS and access.login and role not in allowed:
        return (LOGIN,)
    if role in allowed:
        ok = access.ok if method == "GET" else access.post_ok
        return ok if isinstance(ok, tuple) else (ok,)
    return (access.refused,)


def offered_actions(response) -> set[str]:
    """The admin actions a model's list offers (its "Action" menu)."""
    form = response.context.get("action_form") if response.context else None
    if form is None:
        return set()
    return {name for name, _ in form.fields["action"].choices if name}


def ask(client: Client, method: str, url: str, access: Access, world: World):
    # Whatever the request changes is undone, so each role sees the same world.
    with transaction.atomic():
        if method == "GET":
            response = client.get(url + (f"?{access.query}" if access.query else ""))
        else:
            # "<app.model>" stands for the primary key of the world's object of that model.
            data = {
                name: world.objects[value[1:-1]].pk if str(value).startswith("<") else value
                for name, value in access.post_data.items()
            }
            response = client.post(url, data)
        result = outcome(response)
        transaction.set_rollback(True)
    return result, response


# --- the tests ----------------------------------------------------------------------------

MATRIX_SETTINGS = {
    # Tokens set here, so the token-guarded feeds answer the same in every environment.
    "METRICS_TOKEN": "matrix-metrics-token",
    "HEALTH_TOKEN": "matrix-health-token",
    "ALERTMANAGER_WEBHOOK_TOKEN": "matrix-alertmanager-token",
}


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker, target_database_dsn, tmp_path_factory):
    """Built once for the module; everything is rolled back at its end."""
    media_root = tmp_path_factory.mktemp("matrix-media")
    backup_root = tmp_path_factory.mktemp("matrix-backups")
    with (
        override_settings(
            MEDIA_ROOT=media_root,
            BACKUP_ROOT=backup_root,
            # The users' passwords are never what is tested here: hash them quickly.
            PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
            **MATRIX_SETTINGS,
        ),
        django_db_blocker.unblock(),
        transaction.atomic(),
    ):
        yield _build_world(target_database_dsn=target_database_dsn, media_root=media_root)
        transaction.set_rollback(True)


def cases(world: World):
    for pattern in url_patterns():
        access = ROLE_MATRIX.get(pattern.key)
        if access is None:
            continue
        if isinstance(access, dict):
            for variant, row in access.items():
                yield f"{pattern.key}[{variant}]", concrete_url(pattern, world, variant), row
        else:
            yield pattern.key, concrete_url(pattern, world), access


@pytest.mark.parametrize("role", ROLES)
def test_each_role_reaches_exactly_what_the_matrix_declares(world, role, client):
    client.raise_request_exception = False  # a 500 is a finding to list, not a stop
    user = world.users[role]
    mismatches = []
    for key, url, access in cases(world):
        for method in ("GET", "POST"):
            wanted = expected(access, role, method)
            if wanted is None:
                continue
            if user is not None and "_auth_user_id" not in client.session:
                client.force_login(user)  # again after the logout view
            got, response = ask(client, method, url, access, world)
            if got not in wanted:
                shown = " or ".join(str(w) for w in wanted)
                mismatches.append(f"{method} {url} ({key}) as {role}: expected {shown}, got {got}")
            elif method == "GET" and got == 200 and access.actions is not None:
                offered = offered_actions(response)
                declared = {name for name, who in access.actions.items() if role in who}
                if offered != declared:
                    mismatches.append(
                        f"actions on {url} ({key}) for {role}: expected {sorted(declared)}, "
                        f"offered {sorted(offered)}"
                    )
    assert not mismatches, f"{len(mismatches)} differ from ROLE_MATRIX:\n" + "\n".join(mismatches)


def test_every_url_pattern_has_a_row():
    missing = [p for p in url_patterns() if p.key not in ROLE_MATRIX]
    lines = []
    covered: set[str] = set()
    # A newly registered model: its six admin pages in one line.
    for pattern in missing:
        found = re.fullmatch(r"admin/(\w+)/(\w+)/", pattern.route)
        if found and pattern.key.endswith("_changelist"):
            label = f"{found[1]}.{found[2]}"
            covered |= set(model_pages(label, view=NOBODY))
            lines.append(
                f'    **model_pages("{label}", view=STAFF, add=..., change=..., delete=...),'
            )
    lines += [
        f'    "{p.key}": Access(get=..., post=...),  # {p.route}'
        for p in missing
        if p.key not in covered
    ]
    assert not missing, (
        "These URL patterns have no row in ROLE_MATRIX (tests/role_matrix_table.py). Declare "
        "who may use each: get/post are the roles that may (VW, OC, DBA, DEV, SEC, SU, STAFF, "
        "RESPONDERS, EVERYONE, NOBODY); leave post out for a view that changes nothing; "
        "get=POST_ONLY for a view that answers only POST.\n" + "\n".join(lines)
    )


def test_the_matrix_names_no_pattern_that_is_gone():
    keys = {p.key for p in url_patterns()}
    stale = sorted(set(ROLE_MATRIX) - keys)
    assert not stale, f"ROLE_MATRIX rows for URL patterns that no longer exist: {stale}"
