"""Bounds every form and service shares (issue #17): dates the portal can compute with, and
the lengths of free text people type (reasons, notes). Each bound is stated in the field's
help text, so the form says it before it refuses it."""

from __future__ import annotations

import datetime as dt

from django.core.exceptions import ValidationError
from django.core.validators import MaxLengthValidator

# Schedules compute a horizon (five years of a rule, months of look-ahead) from these dates;
# Python's datetime ends at 9999, so a date near it overflows. Real schedules live here.
EARLIEST_YEAR = 2000
LATEST_YEAR = 2199
DATETIME_RANGE_HELP = f"Between {EARLIEST_YEAR} and {LATEST_YEAR}."

# A reason or note is a sentence or a paragraph; a runbook-length text belongs elsewhere.
REASON_MAX_LENGTH = 1000
NOTE_MAX_LENGTH = 10_000


def plausible_datetime(value: dt.datetime | dt.date) -> None:
    if value is not None and not EARLIEST_YEAR <= value.year <= LATEST_YEAR:
        raise ValidationError(
            f"Enter a date between {EARLIEST_YEAR} and {LATEST_YEAR}.", code="date_range"
        )


reason_length = MaxLengthValidator(REASON_MAX_LENGTH)
note_length = MaxLengthValidator(NOTE_MAX_LENGTH)


def bounded_text(text: str, *, max_length: int, what: str) -> str:
    """`text` if it is at most `max_length` characters, else a ValidationError naming it;
    for services that take a reason or a note from a plain form field."""
    text = text or ""
    if len(text) > max_length:
        raise ValidationError(
            f"The {what} is {len(text):,} characters long; at most {max_length:,}.",
            code="max_length",
        )
    if "\x00" in text:
        raise ValidationError(f"The {what} contains a NUL character.", code="null_characters")
    return text


URL_MAX_LENGTH = 2000


def http_url_problem(url: str) -> str | None:
    """What is wrong with `url` as an http(s) URL a worker will call, or None. The URL is
    never echoed back: webhook URLs carry their token."""
    from urllib.parse import urlsplit

    if len(url) > URL_MAX_LENGTH:
        return f"The URL is over {URL_MAX_LENGTH} characters."
    if any(ord(c) < 33 or ord(c) == 127 for c in url):
        return "The URL contains spaces or control characters."
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - reading it is the check: a bad port raises ValueError
    except ValueError:
        # "http://[::1" (an unclosed IPv6 address), "http://host:99999".
        return "The URL cannot be read (check the host, its [IPv6] brackets and the port)."
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "Enter an http:// or https:// URL."
    return None


DOCKER_URL_SCHEMES = ("unix", "tcp", "http", "https", "ssh")


def docker_engine_url(value: str) -> None:
    """unix:///path, tcp://host:port, ssh://user@host: readable, with a host (or socket path)
    and a port in range; a host or user cannot start with '-' (ssh would read an option)."""
    from urllib.parse import urlsplit

    if any(ord(c) < 33 or ord(c) == 127 for c in value):
        raise ValidationError("The address contains spaces or control characters.")
    scheme, _, rest = value.partition("://")
    if scheme.lower() not in DOCKER_URL_SCHEMES or not rest:
        raise ValidationError(
            "Enter unix:///path/to/docker.sock, tcp://host:2376 or ssh://user@host."
        )
    if scheme.lower() == "unix":
        return
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - reading it is the check: a bad port raises ValueError
    except ValueError:
        raise ValidationError(
            "The address cannot be read (check the host, its [IPv6] brackets and the port)."
        ) from None
    if not parts.hostname or parts.hostname.startswith("-"):
        raise ValidationError("Enter the engine's host name or address.")
    if (parts.username or "").startswith("-"):
        # ssh would read "-o…@host" as an option.
        raise ValidationError("A user name cannot start with '-'.")
