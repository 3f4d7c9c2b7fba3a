"""Browser tests: Playwright drives Debian's Chromium against the live test server."""

import os

import pytest
from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


@pytest.fixture(scope="session")
def browser():
    # Playwright's sync API runs an event loop in this thread; Django's ORM calls made by
    # the test itself (fixtures, assertions) are still synchronous and safe.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    if not os.path.exists(CHROMIUM):
        pytest.exit("Debian's chromium is missing: `make test` installs it.", returncode=2)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()
    # Subprocesses started by later tests (e.g. `check --deploy`) must not inherit it.
    if previous is None:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(15_000)
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def admin_login(live_server, page, transactional_db):
    """Log a new superuser in through the real login form, setting up their authenticator
    on the way (two-factor sign-in is required); returns (page, user)."""
    from django.contrib.auth import get_user_model

    password = "browser-pass-123!"
    user = get_user_model().objects.create_superuser("ops", "ops@example.com", password)
    from tests.signin import sign_in

    sign_in(page, live_server.url, "ops", password)
    assert "/admin/two-factor/" not in page.url
    return page, user
