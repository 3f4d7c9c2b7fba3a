"""Settings come from the environment; production refuses to start half-configured."""

import os
import subprocess
import sys

from tests.conftest import PROJECT_ROOT

PRODUCTION_ENV = {
    "DEBUG": "false",
    "SECRET_KEY": "k" * 20 + "-production-like-secret-key-0123456789",
    "ALLOWED_HOSTS": "ops.example.com",
    "OPSPORTAL_ENV_FILE": "/nonexistent",
    "SECRETS_ENCRYPTION_KEYS": "ZmDfcTF7_60GrrY167zsiPd67pEvs0aGOv2oasOM1Pg=",
    "METRICS_TOKEN": "scrape-token-for-the-settings-tests",
    "AUDIT_HMAC_KEY": "production-like-audit-hmac-key-0123456789-abcdefghij",
}


def manage(*args: str, env: dict) -> subprocess.CompletedProcess:
    base = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {
            "DEBUG",
            "SECRET_KEY",
            "ALLOWED_HOSTS",
            "SECURE_SSL_REDIRECT",
            "SESSION_COOKIE_SECURE",
            "CSRF_COOKIE_SECURE",
            "SECURE_HSTS_SECONDS",
            "SECRETS_ENCRYPTION_KEYS",
            "METRICS_TOKEN",
            "METRICS_PUBLIC",
            "AUDIT_HMAC_KEY",
            "OPSPORTAL_REQUIRE_2FA",
            "SESSION_IDLE_MINUTES",
            "SESSION_MAX_AGE_HOURS",
            "DJANGO_ALLOW_ASYNC_UNSAFE",  # set by the browser tests in this process
        }
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT_ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_production_settings_pass_the_deployment_checks():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION_ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_debug_off_without_secret_key_refuses_to_start():
    env = {**PRODUCTION_ENV}
    env.pop("SECRET_KEY")
    result = manage("check", env=env)
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_debug_off_with_the_development_key_refuses_to_start():
    env = {**PRODUCTION_ENV, "SECRET_KEY": "insecure-development-key-only-valid-with-DEBUG-true"}
    assert "SECRET_KEY must be set" in manage("check", env=env).stderr


def test_debug_off_without_allowed_hosts_refuses_to_start():
    env = {**PRODUCTION_ENV}
    env.pop("ALLOWED_HOSTS")
    result = manage("check", env=env)
    assert result.returncode != 0
    assert "ALLOWED_HOSTS must list" in result.stderr


def test_debug_off_without_a_dedicated_secrets_key_refuses_to_start():
    env = {**PRODUCTION_ENV}
    env.pop("SECRETS_ENCRYPTION_KEYS")
    result = manage("check", env=env)
    assert result.returncode != 0
    assert "SECRETS_ENCRYPTION_KEYS must be set" in result.stderr
    assert "Fernet.generate_key()" in result.stderr  # says how to make one


def test_a_malformed_secrets_key_refuses_to_start():
    env = {**PRODUCTION_ENV, "SECRETS_ENCRYPTION_KEYS": "not-a-fernet-key"}
    result = manage("check", env=env)
    assert result.returncode != 0
    assert "SECRETS_ENCRYPTION_KEYS holds a value that is not a Fernet key" in result.stderr


def test_debug_off_without_metrics_token_refuses_unless_public_on_purpose():
    env = {**PRODUCTION_ENV}
    env.pop("METRICS_TOKEN")
    result = manage("check", env=env)
    assert result.returncode != 0
    assert "METRICS_TOKEN must be set" in result.stderr
    assert "METRICS_PUBLIC=true" in result.stderr

    public = manage("check", env={**env, "METRICS_PUBLIC": "true"})
    assert public.returncode == 0, public.stderr


SHOW_SIGN_IN_SETTINGS = (
    "from django.conf import settings as s; "
    "print(s.SESSION_IDLE_TIMEOUT_SECONDS, s.SESSION_ABSOLUTE_TIMEOUT_SECONDS, "
    "s.SESSION_COOKIE_AGE, s.OPSPORTAL_REQUIRE_2FA)"
)


def test_production_sessions_and_two_factor_defaults_and_overrides():
    result = manage("shell", "-v", "0", "-c", SHOW_SIGN_IN_SETTINGS, env=PRODUCTION_ENV)
    assert result.stdout.split() == ["1800", "43200", "43200", "True"], result.stderr

    env = {
        **PRODUCTION_ENV,
        "SESSION_IDLE_MINUTES": "5",
        "SESSION_MAX_AGE_HOURS": "1.5",
        "OPSPORTAL_REQUIRE_2FA": "false",
    }
    result = manage("shell", "-v", "0", "-c", SHOW_SIGN_IN_SETTINGS, env=env)
    assert result.stdout.split() == ["300", "5400", "5400", "False"], result.stderr


def test_debug_try_out_needs_no_keys_tokens_or_second_factor(tmp_path):
    env = {
        "DEBUG": "true",
        "OPSPORTAL_ENV_FILE": "/nonexistent",
        "OPSPORTAL_VAR_DIR": str(tmp_path),
    }
    result = manage("shell", "-v", "0", "-c", SHOW_SIGN_IN_SETTINGS, env=env)
    assert result.stdout.split() == ["1800", "43200", "43200", "False"], result.stderr


def test_embedded_defaults_need_nothing_installed(tmp_path):
    """SQLite in WAL mode and the filesystem broker under var/, with no DATABASE_URL."""
    env = {
        "DEBUG": "true",
        "OPSPORTAL_ENV_FILE": "/nonexistent",
        "OPSPORTAL_VAR_DIR": str(tmp_path),
    }
    base = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {
            "DATABASE_URL",
            "CELERY_BROKER_URL",
            "CACHE_URL",
            "DEBUG",
            "SECRET_KEY",
            "ALLOWED_HOSTS",
        }
    }
    script = (
        "import django; django.setup()\n"
        "from django.conf import settings; from django.db import connection\n"
        "print(settings.DATABASES['default']['ENGINE'], settings.CELERY_BROKER_URL)\n"
        "print(connection.cursor().execute('PRAGMA journal_mode').fetchone()[0])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        env={**base, **env, "DJANGO_SETTINGS_MODULE": "opsportal.settings"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "sqlite3 filesystem://" in result.stdout
    assert "wal" in result.stdout
    assert (tmp_path / "broker" / "control").is_dir()


def test_debug_off_without_an_audit_key_refuses_to_start():
    """The audit chain's HMAC key comes from the environment, never a default in production."""
    for key in ("", "too-short", "insecure-development-audit-key-only-valid-with-DEBUG"):
        result = manage("check", env={**PRODUCTION_ENV, "AUDIT_HMAC_KEY": key})
        assert result.returncode != 0, key
        assert "AUDIT_HMAC_KEY must be set" in result.stderr, key
    ok = manage("check", env={**PRODUCTION_ENV, "AUDIT_HMAC_KEY": "a" * 40})
    assert ok.returncode == 0, ok.stderr


def test_behind_the_tls_proxy_without_a_proxy_count_the_deploy_check_warns():
    env = {**PRODUCTION_ENV, "BEHIND_TLS_PROXY": "true", "TRUSTED_PROXY_COUNT": "0"}
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    assert result.returncode != 0
    assert "audit.W001" in result.stderr + result.stdout
    env["TRUSTED_PROXY_COUNT"] = "1"
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    assert result.returncode == 0, result.stdout + result.stderr


def test_make_run_env_is_a_simple_debug_try_out_with_a_dedicated_secrets_key(tmp_path):
    import shutil

    shutil.copy(PROJECT_ROOT / "Makefile", tmp_path / "Makefile")
    made = subprocess.run(
        ["make", "-s", ".env", f"PYTHON={sys.executable}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    written = dict(
        line.split("=", 1) for line in (tmp_path / ".env").read_text().splitlines() if line
    )
    assert set(written) == {"DEBUG", "SECRET_KEY", "SECRETS_ENCRYPTION_KEYS"}
    assert written["DEBUG"] == "true"
    env = {"OPSPORTAL_ENV_FILE": str(tmp_path / ".env"), "OPSPORTAL_VAR_DIR": str(tmp_path)}
    script = (
        "from django.conf import settings as s; "
        "print(s.DEBUG, s.OPSPORTAL_REQUIRE_2FA, s.SECRETS_ENCRYPTION_KEYS == "
        f"[{written['SECRETS_ENCRYPTION_KEYS']!r}])"
    )
    result = manage("shell", "-v", "0", "-c", script, env=env)
    # The try-out signs in with a password; the key it wrote is a valid Fernet key.
    assert result.stdout.split() == ["True", "False", "True"], result.stderr
