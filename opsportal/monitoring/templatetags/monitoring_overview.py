"""Template tags for the operations overview and the systems' small charts.

Sparklines are inline SVG polylines: no JavaScript library, nothing to load."""

from __future__ import annotations

import datetime as dt

from django import template
from django.utils.html import format_html
from django.utils.safestring import SafeString

from opsportal.monitoring import selectors

register = template.Library()


@register.simple_tag(takes_context=True)
def operations_overview(context) -> dict:
    request = context.get("request")
    return selectors.operations_overview(user=getattr(request, "user", None))


@register.inclusion_tag("admin/monitoring/system_charts.html")
def system_charts(system) -> dict:
    if system is None or system.pk is None:
        return {"figures": []}
    return {"figures": selectors.system_figures(system=system)}


@register.simple_tag
def sparkline(values: list[float], width: int = 120, height: int = 24):
    if len(values) < 2:
        return format_html(
            '<svg class="sparkline" width="{}" height="{}" role="img" aria-label="no data"></svg>',
            width,
            height,
        )
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    step = (width - 2) / (len(values) - 1)
    coords = " ".join(
        f"{1 + i * step:.1f},{height - 2 - (v - low) / span * (height - 4):.1f}"
        for i, v in enumerate(values)
    )
    return format_html(
        '<svg class="sparkline" width="{}" height="{}" viewBox="0 0 {} {}" role="img" '
        'aria-label="from {} to {}"><polyline fill="none" stroke="#417690" stroke-width="1.5" '
        'points="{}"/></svg>',
        width,
        height,
        width,
        height,
        f"{values[0]:g}",
        f"{values[-1]:g}",
        coords,
    )


@register.filter
def figure(value: float | None, unit: str) -> str | SafeString:
    """A figure in the units an operator reads: 512 ms, 93.1 %, 1.2 GiB."""
    if value is None:
        return "—"
    if unit == "B":
        for suffix in ("B", "KiB", "MiB", "GiB", "TiB"):
            if abs(value) < 1024 or suffix == "TiB":
                return f"{value:.1f} {suffix}" if suffix != "B" else f"{value:.0f} B"
            value /= 1024
    if unit == "%":
        return f"{value:.1f} %"
    if unit == "ms":
        return f"{value:.0f} ms"
    return f"{value:g}"


@register.filter
def age(delta: dt.timedelta | None) -> str:
    if delta is None:
        return "never"
    seconds = int(delta.total_seconds())
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400 * 2:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} days"
