"""Credentials masked out of what an operation shows: its output, error and result are
displayed in the admin, copied to the incident timeline and quoted in the audit log, and a
credential must never reach any of them.

Two rules. By name: an environment variable (or label, or result key) whose name says it
holds a secret or a connection string (PASSWORD, TOKEN, *_URL, *DSN*, *AUTH*, …) has its
whole value masked. By shape, in any text: the password of a URL's userinfo
(postgres://app:***@db), a token in a URL's userinfo, `Basic`/`Bearer` credentials, an
Authorization header, `password=…`-style pairs of DSNs and command lines, and passwords
given as SQL literals (`ALTER ROLE … PASSWORD '…'`, `IDENTIFIED BY '…'`).

Evidence files are not masked: they are forensic copies, kept byte for byte and guarded by
their own download permission.
"""

from __future__ import annotations

import base64
import binascii
import json
import re

MASK = "********"

# Words that make a name secret wherever they appear in it (DB_PASSWORD, GITHUB_TOKEN,
# OAUTH_CLIENT, SENTRY_DSN), and whole words that do (DATABASE_URL, BROKER_URI) but would
# match too much as parts of words (SECURITY contains URI).
_SECRET_NAME_PARTS = ("PASS", "SECRET", "TOKEN", "KEY", "CREDENTIAL", "AUTH", "DSN", "COOKIE")
_SECRET_NAME_WORDS = {"URL", "URLS", "URI", "URIS", "PWD"}


def is_secret_name(name: str) -> bool:
    upper = name.upper()
    if any(part in upper for part in _SECRET_NAME_PARTS):
        return True
    return any(word in _SECRET_NAME_WORDS for word in re.split(r"[^A-Z0-9]+", upper))


# scheme://user:password@host: the user stays (it says which account), the password goes.
# The password may contain "@" (unencoded); it ends before whitespace, a quote or a "/".
_URL_USERINFO_PASSWORD = re.compile(
    r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/?#@'\"<>]*):[^\s/'\"<>]*@"
)
# scheme://token@host (a Sentry DSN key, a Git token): the whole userinfo goes.
_URL_USERINFO_TOKEN = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://)[^\s:/?#@'\"<>]+@")
# Authorization: <scheme> <credentials> (header lines, curl -H, JSON of headers).
_AUTHORIZATION = re.compile(
    r"(?P<head>\b(?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?)"
    r"(?:(?P<scheme>[A-Za-z][A-Za-z0-9_\-]*)\s+)?[^\s\"',;]+",
    re.IGNORECASE,
)
_BEARER = re.compile(r"(?P<head>\bBearer\s+)[A-Za-z0-9+/=._~\-]{8,}", re.IGNORECASE)
_BASIC = re.compile(r"(?P<head>\bBasic\s+)(?P<value>[A-Za-z0-9+/]{4,}={0,2})(?![A-Za-z0-9+/=])")
# key=value pairs of DSNs, ODBC strings, query strings and command lines.
_CREDENTIAL_KEY_PATTERN = (
    r"[A-Za-z0-9_.\-]*"
    r"(?:password|passwd|pwd|secret|token|api[_\-]?key|access[_\-]?key)"
    r"[A-Za-z0-9_\-]*"
)
_KEY_VALUE = re.compile(
    rf"(?P<head>(?<![A-Za-z0-9_]){_CREDENTIAL_KEY_PATTERN}\s*=\s*)"
    r"(?:'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^\s;&,'\"]+)",
    re.IGNORECASE,
)
# NAME=value with an environment-style name (upper case) that says it holds a secret:
# DATABASE_URL=… in a log line, `env` output, or inspect output stored before masking.
_ENV_ASSIGNMENT = re.compile(
    r"(?<![A-Za-z0-9_])(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>'[^']*'|\"[^\"]*\"|[^\s\"',;]+)"
)
# A password given as an SQL literal: ALTER ROLE app PASSWORD 'pw', CREATE USER … ENCRYPTED
# PASSWORD E'pw', … IDENTIFIED BY 'pw', dollar-quoted $$pw$$; a literal cut off by a bounded
# read (a preview's first 300 characters of a query) is masked to its end.
_SQL_PASSWORD = re.compile(
    r"(?P<head>\b(?:PASSWORD|IDENTIFIED\s+BY)\s+)"
    r"(?:[EeUu]?&?'(?:[^']|'')*(?:'|$)|\$(?P<tag>[A-Za-z_0-9]*)\$.*?(?:\$(?P=tag)\$|$))",
    re.IGNORECASE | re.DOTALL,
)
# "password": "…" in JSON text (an application logging its settings).
_JSON_KEY_VALUE = re.compile(
    rf"(?P<head>\"{_CREDENTIAL_KEY_PATTERN}\"\s*:\s*)\"(?:[^\"\\]|\\.)*\"", re.IGNORECASE
)


def _basic(match: re.Match) -> str:
    # "Basic" is an ordinary word too: only a value that decodes to user:password is one.
    value = match["value"]
    try:
        decoded = base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
    except (binascii.Error, ValueError):
        return match[0]
    return match["head"] + MASK if b":" in decoded else match[0]


def _authorization(match: re.Match) -> str:
    scheme = match["scheme"]
    return match["head"] + (f"{scheme} " if scheme else "") + MASK


def _env_assignment(match: re.Match) -> str:
    return f"{match['name']}={MASK}" if is_secret_name(match["name"]) else match[0]


def mask_credentials(text: str) -> str:
    """`text` with every credential it visibly carries replaced by ********."""
    if not text:
        return text
    text = _ENV_ASSIGNMENT.sub(_env_assignment, text)
    text = _URL_USERINFO_PASSWORD.sub(lambda m: f"{m['head']}:{MASK}@", text)
    text = _URL_USERINFO_TOKEN.sub(lambda m: f"{m['head']}{MASK}@", text)
    text = _AUTHORIZATION.sub(_authorization, text)
    text = _BEARER.sub(lambda m: m["head"] + MASK, text)
    text = _BASIC.sub(_basic, text)
    text = _KEY_VALUE.sub(lambda m: m["head"] + MASK, text)
    text = _SQL_PASSWORD.sub(lambda m: m["head"] + MASK, text)
    return _JSON_KEY_VALUE.sub(lambda m: f'{m["head"]}"{MASK}"', text)


def mask_env_entry(entry: str) -> str:
    """One NAME=value of a container's environment, masked by its name and its value."""
    name, separator, value = entry.partition("=")
    if not separator:
        return mask_credentials(entry)
    if value and is_secret_name(name):
        return f"{name}={MASK}"
    return f"{name}={mask_credentials(value)}"


def mask_structure(value):
    """A JSON-like structure (an operation's result) with credentials masked: values under
    secret-looking keys entirely, other strings by shape."""
    if isinstance(value, dict):
        return {
            key: MASK
            if isinstance(key, str) and is_secret_name(key) and isinstance(item, str) and item
            else mask_structure(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [mask_structure(item) for item in value]
    if isinstance(value, str):
        return mask_credentials(value)
    return value


def masked_inspect(attrs: dict) -> dict:
    """`docker inspect` output as the admin may show it: the environment masked entry by
    entry, labels by name, everything else (command line, arguments) by shape."""
    attrs = json.loads(json.dumps(attrs, default=str))
    config = attrs.get("Config") or {}
    if config.get("Env"):
        config["Env"] = [mask_env_entry(entry) for entry in config["Env"]]
    if config.get("Labels"):
        config["Labels"] = {
            name: MASK if value and is_secret_name(name) else mask_credentials(value)
            for name, value in config["Labels"].items()
        }
    return mask_structure(attrs)
