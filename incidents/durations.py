"""Elapsed times as an incident review reads them (the incident page and the post-incident
review draft say them the same way)."""

import datetime as dt


def elapsed_text(delta: dt.timedelta | None) -> str:
    """5 s, 12 min 5 s, 3 h 4 min, 2 d 3 h: what an incident review reads."""
    if delta is None:
        return "—"
    seconds = max(int(delta.total_seconds()), 0)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {seconds} s"
    return f"{seconds} s"
