"""Recurrence rules (RFC 5545 RRULE, read by python-dateutil) and their occurrences.

Rules are read in the plan's own time zone, so "02:00 on the third Saturday" stays 02:00
local across daylight-saving changes; occurrences are returned in UTC.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
import zoneinfo
from functools import lru_cache

from dateutil import rrule as dateutil_rrule
from django.core.exceptions import ValidationError

# How far ahead a rule is searched when validating it (and for its shortest gap).
VALIDATION_HORIZON = dt.timedelta(days=366 * 5)
EXAMPLE = "FREQ=MONTHLY;BYDAY=SA;BYSETPOS=3 (the third Saturday of every month)"
MAX_VALIDATED_STARTS = 4000
ALLOWED_FREQUENCIES = (
    dateutil_rrule.YEARLY,
    dateutil_rrule.MONTHLY,
    dateutil_rrule.WEEKLY,
    dateutil_rrule.DAILY,
)


@lru_cache(maxsize=256)
@lru_cache(maxsize=1)
def _zone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def zone(name: str) -> zoneinfo.ZoneInfo:
    """The IANA time zone called `name`, or a ValidationError saying what to fix.

    Only names in the time zone database are looked up: anything else (a 10,000-character
    string, a path) never reaches the filesystem."""
    if not isinstance(name, str) or name not in _zone_names():
        shown = name[:60] + "…" if isinstance(name, str) and len(name) > 60 else name
        raise ValidationError(
            {
                "time_zone": f"The time zone {shown!r} does not exist. Use an IANA name such "
                "as UTC, Europe/Paris or America/New_York."
            }
        )
    return zoneinfo.ZoneInfo(name)


def _rule_text(text: str) -> str:
    text = (text or "").strip()
    if text.upper().startswith("RRULE:"):
        text = text[6:]
    return text


_UNTIL = re.compile(r"(?:^|;)UNTIL=([0-9TZ]+)", re.IGNORECASE)


def _local_until(value: str, tz: zoneinfo.ZoneInfo) -> dt.datetime:
    value = value.upper()
    if "T" not in value:
        # A date: the whole of that day, in the rule's zone.
        return dt.datetime.strptime(value, "%Y%m%d").replace(hour=23, minute=59, second=59)
    if value.endswith("Z"):
        at = dt.datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
        return at.astimezone(tz).replace(tzinfo=None)
    return dt.datetime.strptime(value, "%Y%m%dT%H%M%S")


def parse_rule(text: str, *, first_start: dt.datetime, time_zone: str) -> dateutil_rrule.rrule:
    """The rule anchored at `first_start` (aware), as a dateutil rrule over naive local times."""
    text = _rule_text(text)
    if not text:
        raise ValidationError({"rrule": f"Enter a recurrence rule, e.g. {EXAMPLE}."})
    if "DTSTART" in text.upper():
        raise ValidationError(
            {"rrule": "Leave DTSTART out of the rule: the first start is its own field."}
        )
    if "FREQ=" not in text.upper():
        raise ValidationError(
            {"rrule": f"The rule needs a FREQ (YEARLY, MONTHLY, WEEKLY or DAILY); e.g. {EXAMPLE}."}
        )
    tz = zone(time_zone)
    local_start = first_start.astimezone(tz).replace(tzinfo=None)
    # dateutil refuses a UTC UNTIL ("...Z") next to the naive local starts used here, so
    # UNTIL is read apart and given to the rule in local time.
    until_match = _UNTIL.search(text)
    text = _UNTIL.sub("", text).strip(";")
    try:
        rule = dateutil_rrule.rrulestr(text, dtstart=local_start)
        until = _local_until(until_match.group(1), tz) if until_match else None
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        raise ValidationError(
            {"rrule": f"The recurrence rule cannot be read ({exc}). Example: {EXAMPLE}."}
        ) from None
    if not isinstance(rule, dateutil_rrule.rrule):
        raise ValidationError({"rrule": "Enter a single RRULE, not a set of rules or dates."})
    # Finer rules (HOURLY, MINUTELY, SECONDLY) are not maintenance schedules, and searching
    # five years of seconds for validation would hang the request.
    if rule._freq not in ALLOWED_FREQUENCIES:
        raise ValidationError(
            {
                "rrule": f"Use FREQ=YEARLY, MONTHLY, WEEKLY or DAILY (a window at most daily); "
                f"e.g. {EXAMPLE}."
            }
        )
    if rule._interval < 1:
        # dateutil accepts INTERVAL=0 and then never advances: an endless search.
        raise ValidationError(
            {"rrule": "INTERVAL must be a whole number of at least 1 (1 = every period)."}
        )
    if until is not None:
        if rule._count:
            raise ValidationError({"rrule": "Use COUNT or UNTIL, not both (RFC 5545)."})
        rule = rule.replace(until=until)
    return rule


def occurrences(
    rule: dateutil_rrule.rrule,
    *,
    time_zone: str,
    start: dt.datetime,
    end: dt.datetime,
) -> list[dt.datetime]:
    """Occurrence starts in [start, end), in UTC."""
    tz = zone(time_zone)
    local_start = start.astimezone(tz).replace(tzinfo=None)
    local_end = end.astimezone(tz).replace(tzinfo=None)
    found = []
    for local in rule.between(local_start, local_end, inc=True):
        at = local.replace(tzinfo=tz).astimezone(dt.UTC)
        if start <= at < end:
            found.append(at)
    return found


def validation_starts(
    rule: dateutil_rrule.rrule, *, time_zone: str, first_start: dt.datetime
) -> list[dt.datetime]:
    """The rule's starts (UTC) in the validation horizon; a rule with more than
    MAX_VALIDATED_STARTS of them is refused rather than enumerated (BYHOUR/BYMINUTE lists
    can turn a DAILY rule into millions of occurrences, which would hang the request)."""
    tz = zone(time_zone)
    end = first_start + VALIDATION_HORIZON
    local_start = first_start.astimezone(tz).replace(tzinfo=None)
    local_end = end.astimezone(tz).replace(tzinfo=None)
    found = []
    for local in rule.xafter(local_start, inc=True):
        if local > local_end:
            break
        if len(found) >= MAX_VALIDATED_STARTS:
            raise ValidationError(
                {
                    "rrule": f"This rule occurs more than {MAX_VALIDATED_STARTS} times in five "
                    "years (more than about twice a day): remove BYHOUR/BYMINUTE values or "
                    f"use a less frequent rule; e.g. {EXAMPLE}."
                }
            )
        at = local.replace(tzinfo=tz).astimezone(dt.UTC)
        if first_start <= at < end:
            found.append(at)
    return found


def validate_plan(
    *, rrule: str, first_start: dt.datetime, time_zone: str, duration: dt.timedelta
) -> dateutil_rrule.rrule:
    """Refuse impossible rules, empty durations and windows longer than their interval."""
    if duration <= dt.timedelta(0):
        raise ValidationError(
            {"duration_minutes": "A window must last at least one minute; enter its length."}
        )
    rule = parse_rule(rrule, first_start=first_start, time_zone=time_zone)
    starts = validation_starts(rule, time_zone=time_zone, first_start=first_start)
    if not starts:
        raise ValidationError(
            {
                "rrule": "This rule has no occurrence in the five years after the first start "
                "(e.g. the 30th of February, or an UNTIL before the first start). "
                f"Check BYMONTH/BYMONTHDAY/BYSETPOS and UNTIL; example: {EXAMPLE}."
            }
        )
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    if gaps and min(gaps) < duration:
        shortest = min(gaps)
        raise ValidationError(
            {
                "duration_minutes": f"A window lasts {_human(duration)} but occurrences of "
                f"this rule can be only {_human(shortest)} apart, so they would overlap. "
                "Shorten the window or make the rule less frequent."
            }
        )
    return rule


def _human(delta: dt.timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes % (60 * 24) == 0:
        return f"{minutes // (60 * 24)} day(s)"
    if minutes % 60 == 0:
        return f"{minutes // 60} h"
    return f"{minutes} min"
