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
