"""Label values taken from API data: ``unknown`` when missing, bounded in length."""

from __future__ import annotations

UNKNOWN = "unknown"
MAX_LABEL_LENGTH = 128


def label(value: object) -> str:
    """``value`` if it is a non-empty string (cut to ``MAX_LABEL_LENGTH``), else ``unknown``."""
    if not isinstance(value, str) or not value:
        return UNKNOWN
    return value[:MAX_LABEL_LENGTH]
