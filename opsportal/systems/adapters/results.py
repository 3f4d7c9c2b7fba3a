from dataclasses import dataclass, field


@dataclass(frozen=True)
class PingResult:
    """What a successful connection check learned about the system."""

    summary: str
    details: dict = field(default_factory=dict)
