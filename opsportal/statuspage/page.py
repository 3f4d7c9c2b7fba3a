"""Building what the public pages show from the components, their days and the public
sources. Only public fields go in: component names and descriptions, public incident
titles and updates, public window titles and impact."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass

from django.template.loader import render_to_string
from django.utils.html import format_html_join

from opsportal.statuspage.models import Component, ComponentDay, ComponentState
from opsportal.statuspage.rules import worst
from opsportal.statuspage.sources import PublicIncident, PublicWindow
from opsportal.statuspage.uptime import DAYS

UPCOMING_DAYS = 14

BANNER = {
    ComponentState.OPERATIONAL: "All systems operational",
    ComponentState.DEGRADED: "Some systems have degraded performance",
    ComponentState.PARTIAL_OUTAGE: "Partial outage",
    ComponentState.MAJOR_OUTAGE: "Major outage",
    ComponentState.MAINTENANCE: "Maintenance in progress",
}


def bar_class(percent: float | None) -> str:
    if percent is None:
        return "nodata"
    if percent >= 99.95:
        return "up100"
    if percent >= 99:
        return "up99"
    if percent >= 95:
        return "up95"
    return "down"


@dataclass
class Bar:
    day: dt.date
    percent: float | None
    css: str
    incidents: list[str]

    @property
    def short(self) -> str:
        figure = "no data" if self.percent is None else f"{self.percent:.2f} %"
        return f"{self.day:%d %b}: {figure}" + "".join(f"; {t}" for t in self.incidents)

    @property
    def text(self) -> str:
        figure = "no data" if self.percent is None else f"{self.percent:.2f} % available"
        extra = "".join(f"; incident: {t}" for t in self.incidents)
        return f"{self.day:%d %b %Y}: {figure}{extra}"


def component_rows(
    components: list[Component],
    days: dict[int, dict[dt.date, ComponentDay]],
    incidents: list[PublicIncident],
    today: dt.date,
) -> list[dict]:
    first = today - dt.timedelta(days=DAYS - 1)
    by_day: dict[tuple[int, dt.date], list[str]] = defaultdict(list)
    for incident in incidents:
        start = max(incident.started_at.date(), first)
        end = (incident.resolved_at or dt.datetime.now(dt.UTC)).date()
        day = start
        while day <= min(end, today):
            for component_id in incident.component_ids:
                by_day[(component_id, day)].append(incident.title)
            day += dt.timedelta(days=1)
    rows = []
    for component in components:
        bars = []
        total, counted = 0.0, 0
        for i in range(DAYS):
            day = first + dt.timedelta(days=i)
            row = days.get(component.pk, {}).get(day)
            percent = row.available_percent if row else None
            if percent is not None:
                total += percent
                counted += 1
            bars.append(Bar(day, percent, bar_class(percent), by_day.get((component.pk, day), [])))
        rows.append(
            {
                "component": component,
                # 90 bars x 50 components: joined here, not looped in the template (the
                # refresh runs after every collection round).
                "bars_html": format_html_join(
                    "",
                    '<li class="{}" title="{}"></li>',
                    ((b.css + (" inc" if b.incidents else ""), b.short) for b in bars),
                ),
                "uptime": round(total / counted, 2) if counted else None,
                "notable": [
                    b for b in bars if b.incidents or (b.percent is not None and b.percent < 99)
                ],
            }
        )
    return rows


def render_index(
    *,
    components: list[Component],
    days: dict[int, dict[dt.date, ComponentDay]],
    incidents: list[PublicIncident],
    windows: list[PublicWindow],
    now: dt.datetime,
) -> tuple[str, str]:
    today = now.astimezone(dt.UTC).date()
    names = {c.pk: c.name for c in components}
    overall = worst([c.state for c in components])
    active = [i for i in incidents if i.active]
    in_progress = [w for w in windows if w.status == "in_progress"]
    upcoming = [
        w
        for w in windows
        if w.status == "scheduled" and now <= w.starts_at <= now + dt.timedelta(days=UPCOMING_DAYS)
    ]
    html = render_to_string(
        "statuspage/index.html",
        {
            "overall": overall,
            "banner": BANNER[overall],
            "rows": component_rows(components, days, incidents, today),
            "active": [(i, [names[c] for c in i.component_ids if c in names]) for i in active],
            "in_progress": [
                (w, [names[c] for c in w.component_ids if c in names]) for w in in_progress
            ],
            "upcoming": [(w, [names[c] for c in w.component_ids if c in names]) for w in upcoming],
            "computed_at": now,
            "days": DAYS,
        },
    )
    return overall, html
