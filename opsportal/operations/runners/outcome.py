"""What an operation returns: its outcome in words for the operator and as data, and the
small formatting both use."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Outcome:
    output: str
    result: dict = field(default_factory=dict)


def _mib(value: float | None) -> str:
    return "—" if value is None else f"{value / 1_048_576:.1f} MiB"


def _table(rows: list[dict], columns: list[str]) -> str:
    if not rows:
        return "(none)"
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns)]
    lines += ["  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(lines)
