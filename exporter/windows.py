"""Window arithmetic: which report buckets a window sums, as pure functions of a clock reading.

A sliding window is summed from the finest width kept for its span (``1m`` up to 24 hours,
``1h`` up to 31 days), its newest bucket being the one in progress. Calendar windows are
summed from ``1h`` buckets for usage. The cost report has only ``1d`` buckets, so cost serves
calendar windows and sliding windows of whole days longer than one (a one-day cost window
would be `today` under another name).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from exporter.config import BUCKET_SECONDS, MAX_SPAN, Window

DAY = 86400


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


def summing_width(window: Window, report: str) -> str | None:
    """The bucket width a report's window is summed from; None if the report cannot serve it."""
    if report in ("cost", "claude_code"):  # daily data only
        if window.calendar is not None:
            return "1d"
        assert window.span is not None
        return "1d" if window.span > DAY and window.span % DAY == 0 else None
    if window.calendar is not None:
        return "1h"
    assert window.span is not None
    return next(width for width, longest in MAX_SPAN.items() if window.span <= longest)


def served(windows: Iterable[Window], report: str) -> dict[str, str]:
    """Window name -> summing width, for the windows the report serves."""
    result = {}
    for window in windows:
        width = summing_width(window, report)
        if width is not None:
            result[window.name] = width
    return result


def window_range(window: Window, width: str, now: datetime) -> tuple[datetime, datetime]:
    """The half-open span [start, end) of bucket starts that ``window`` sums at ``now``.

    The end is the end of the bucket in progress, so the current partial bucket counts.
    """
    end = floor_to_width(now, width) + timedelta(seconds=BUCKET_SECONDS[width])
    if window.calendar == "day":
        return floor_to_width(now, "1d"), end
    if window.calendar == "month":
        return floor_to_width(now, "1d").replace(day=1), end
    assert window.span is not None
    return end - timedelta(seconds=window.span), end


def needed_range(windows: Iterable[Window], report: str, width: str, now: datetime) -> tuple[datetime, datetime] | None:
    """The one span of buckets of ``width`` that covers every window the report sums from it."""
    spans = [window_range(w, width, now) for w in windows if summing_width(w, report) == width]
    if not spans:
        return None
    return min(s for s, _ in spans), max(e for _, e in spans)


def widths_needed(windows: Iterable[Window], report: str) -> tuple[str, ...]:
    """The bucket widths a report must fetch to serve its windows, finest first."""
    widths = {summing_width(w, report) for w in windows} - {None}
    return tuple(sorted(widths, key=BUCKET_SECONDS.__getitem__))  # type: ignore[arg-type]


def next_boundary(widths: Iterable[str], now: datetime) -> datetime | None:
    """The next instant at which a window summed from these widths moves: the end of the
    finest bucket in progress (a day's and a month's ends are also hour and minute ends)."""
    ends = [floor_to_width(now, w) + timedelta(seconds=BUCKET_SECONDS[w]) for w in widths]
    return min(ends) if ends else None


def bucket_count(start: datetime, end: datetime, width: str) -> int:
    return int((end - start).total_seconds()) // BUCKET_SECONDS[width]
