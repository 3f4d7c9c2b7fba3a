import re

from tests.conftest import PROJECT_ROOT


def test_every_setting_read_from_the_environment_is_documented():
    settings_source = (PROJECT_ROOT / "opsportal" / "settings.py").read_text()
    read = set(re.findall(r'env(?:\.\w+)?\(\s*"([A-Z][A-Z0-9_]+)"', settings_source))
    documented = set(
        re.findall(
            r"^([A-Z][A-Z0-9_]+)=", (PROJECT_ROOT / ".env.example").read_text(), re.MULTILINE
        )
    )
    assert len(read) > 30
    assert read - documented == set()
