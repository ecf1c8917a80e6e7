"""Window arithmetic: which report buckets a window sums, as pure functions of a clock reading."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from exporter.config import BUCKET_SECONDS, Window


def floor_to_width(moment: datetime, width: str) -> datetime:
    """The start of the UTC bucket of ``width`` that holds ``moment``."""
    moment = moment.astimezone(UTC)
    if width == "1m":
        return moment.replace(second=0, microsecond=0)
    if width == "1h":
        return moment.replace(minute=0, second=0, microsecond=0)
    if width == "1d":
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)
    raise ValueError(f"unknown bucket width {width!r}")


def window_range(window: Window, now: datetime) -> tuple[datetime, datetime]:
    """The half-open span [start, end) of bucket starts that ``window`` sums at ``now``.

    The end is the end of the bucket still in progress, so the current partial bucket counts.
    """
    current = floor_to_width(now, window.bucket_width)
    step = timedelta(seconds=BUCKET_SECONDS[window.bucket_width])
    end = current + step
    if window.calendar == "day":
        return floor_to_width(now, "1d"), end
    if window.calendar == "month":
        return current.replace(day=1), end
    assert window.buckets is not None
    return end - window.buckets * step, end


def fetch_range(windows: Iterable[Window], now: datetime) -> tuple[datetime, datetime]:
    """The one span that covers every window given (all of one width): what a poll requests."""
    spans = [window_range(w, now) for w in windows]
    if not spans:
        raise ValueError("no windows to cover")
    return min(s for s, _ in spans), max(e for _, e in spans)


def bucket_count(start: datetime, end: datetime, width: str) -> int:
    return int((end - start).total_seconds()) // BUCKET_SECONDS[width]


def in_window(bucket_start: datetime, span: tuple[datetime, datetime]) -> bool:
    return span[0] <= bucket_start < span[1]
