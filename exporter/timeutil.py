"""Durations and timestamps as the project writes them: one parser and one formatter of each."""

from __future__ import annotations

import re
from datetime import UTC, datetime

# Prometheus-style durations: units in descending order, each at most once (``1h30m``, ``1s500ms``).
_DURATION_RE = re.compile(r"^(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$")
_UNITS = (("w", 604800_000), ("d", 86400_000), ("h", 3600_000), ("m", 60_000), ("s", 1000), ("ms", 1))


def parse_duration(text: str) -> float:
    """Seconds in a Prometheus-style duration: ``90s``, ``5m``, ``1h30m``, ``1s500ms``."""
    match = _DURATION_RE.match(text.strip()) if text else None
    if not match or not any(match.groups()):
        raise ValueError(f"invalid duration {text!r} (expected e.g. 30s, 5m, 1h30m)")
    millis = sum(int(g) * size for g, (_, size) in zip(match.groups(), _UNITS, strict=True) if g)
    return millis / 1000


def format_duration(seconds: float) -> str:
    """The spelling ``parse_duration`` reads back to the same value (to the millisecond).

    Weeks are left out on purpose: ``14d`` reads better than ``2w`` in a configuration.
    """
    millis = round(seconds * 1000)
    if millis <= 0:
        return "0s"
    parts = []
    for unit, size in _UNITS[1:]:
        count, millis = divmod(millis, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def format_rfc3339(moment: datetime, *, fraction: str = "") -> str:
    """UTC RFC 3339 with a ``Z``; ``fraction`` is ``""`` (seconds), ``"ms"`` or ``"us"``."""
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if fraction == "ms":
        text += f".{moment.microsecond // 1000:03d}"
    elif fraction == "us":
        text += f".{moment.microsecond:06d}"
    elif fraction:
        raise ValueError(f"unknown fraction {fraction!r}")
    return text + "Z"


def format_unix(unix: float, *, fraction: str = "ms") -> str:
    """``format_rfc3339`` of a Unix time."""
    return format_rfc3339(datetime.fromtimestamp(unix, UTC), fraction=fraction)
