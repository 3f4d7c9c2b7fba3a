import pytest

pytestmark = pytest.mark.browser


def test_login_lands_on_the_admin(admin_login, live_server):
    page, _ = admin_login
    assert "OpsPortal" in page.inner_text("#site-name")
