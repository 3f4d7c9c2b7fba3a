"""Domain apps call each other only through the other's services and selectors, never its
models, admin, tasks or views (CONVENTIONS.md, "Layers"): e.g. maintenance asks incidents'
alert service to release the alerts a window held instead of updating incidents.Alert."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOMAIN_APPS = ("incidents", "backups", "maintenance")
# What one domain app may import from another.
PUBLIC = ("services", "selectors")
# Known imports outside PUBLIC, each with the reason it is still there; the list may only
# shrink (the configuration-export registry moved to the shared layer, opsportal.configuration;
# checklists read backups' state through backups.selectors).
STILL_ALLOWED: set[tuple[str, str]] = set()


def cross_app_imports():
    for app in DOMAIN_APPS:
        for path in sorted((ROOT / app).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    # `from backups import configuration` imports backups.configuration.
                    modules = (
                        [node.module]
                        if "." in node.module
                        else [f"{node.module}.{a.name}" for a in node.names]
                    )
                elif isinstance(node, ast.Import):
                    modules = [a.name for a in node.names]
                else:
                    continue
                for module in modules:
                    other = module.split(".")[0]
                    if other in DOMAIN_APPS and other != app:
                        yield path.relative_to(ROOT).as_posix(), module


def test_domain_apps_reach_each_other_only_through_services_and_selectors():
    found = set(cross_app_imports())
    assert found, "the walk found no cross-app import at all: is ROOT right?"
    wrong = sorted(
        (path, module)
        for path, module in found
        if [*module.split("."), ""][1] not in PUBLIC and (path, module) not in STILL_ALLOWED
    )
    assert not wrong, f"imports of another domain app's internals: {wrong}"


def test_the_list_of_exceptions_only_names_imports_that_still_exist():
    assert set(cross_app_imports()) >= STILL_ALLOWED
