"""Window arithmetic at minute, hour, day and month boundaries, with an injected clock."""

from __future__ import annotations

from datetime import UTC, datetime, timezone

import pytest

from exporter.config import DEFAULT_WINDOWS, Window
from exporter.windows import fetch_range, floor_to_width, window_range

WINDOWS = {w.name: w for w in DEFAULT_WINDOWS}


def t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize("name,now,start,end", [
    # the current partial bucket is included: the span ends at the end of the bucket in progress
    ("1h", "2026-03-10T12:34:56", "2026-03-10T11:35:00", "2026-03-10T12:35:00"),
    ("1h", "2026-03-10T12:00:00", "2026-03-10T11:01:00", "2026-03-10T12:01:00"),
    ("1h", "2026-03-10T00:00:30", "2026-03-09T23:01:00", "2026-03-10T00:01:00"),
    ("24h", "2026-03-10T12:34:56", "2026-03-09T13:00:00", "2026-03-10T13:00:00"),
    ("24h", "2026-03-01T00:59:59", "2026-02-28T01:00:00", "2026-03-01T01:00:00"),
    ("7d", "2026-03-10T12:00:00", "2026-03-04T00:00:00", "2026-03-11T00:00:00"),
    ("30d", "2026-03-10T12:00:00", "2026-02-09T00:00:00", "2026-03-11T00:00:00"),
    ("today", "2026-03-10T23:59:59", "2026-03-10T00:00:00", "2026-03-11T00:00:00"),
    ("today", "2026-03-11T00:00:00", "2026-03-11T00:00:00", "2026-03-12T00:00:00"),
    ("month", "2026-03-10T12:00:00", "2026-03-01T00:00:00", "2026-03-11T00:00:00"),
    ("month", "2026-03-01T00:00:00", "2026-03-01T00:00:00", "2026-03-02T00:00:00"),
    ("month", "2026-02-28T23:59:59", "2026-02-01T00:00:00", "2026-03-01T00:00:00"),
    ("month", "2024-12-31T23:00:00", "2024-12-01T00:00:00", "2025-01-01T00:00:00"),
])
def test_window_range(name, now, start, end):
    assert window_range(WINDOWS[name], t(now)) == (t(start), t(end))


def test_a_zone_other_than_utc_is_converted_first():
    from datetime import timedelta
    plus_two = timezone(timedelta(hours=2))
    now = datetime(2026, 3, 11, 1, 30, tzinfo=plus_two)  # 23:30 UTC on the 10th
    assert window_range(WINDOWS["today"], now) == (t("2026-03-10T00:00:00"), t("2026-03-11T00:00:00"))


def test_fetch_range_covers_the_widest_window_of_a_width():
    daily = [w for w in DEFAULT_WINDOWS if w.bucket_width == "1d"]
    # on the 31st the month window (31 days) is wider than 30d
    assert fetch_range(daily, t("2026-03-31T08:00:00")) == (t("2026-03-01T00:00:00"), t("2026-04-01T00:00:00"))
    # early in the month, 30d is the widest
    assert fetch_range(daily, t("2026-03-02T08:00:00")) == (t("2026-02-01T00:00:00"), t("2026-03-03T00:00:00"))


def test_floor():
    moment = t("2026-03-10T12:34:56.789")
    assert floor_to_width(moment, "1m") == t("2026-03-10T12:34:00")
    assert floor_to_width(moment, "1h") == t("2026-03-10T12:00:00")
    assert floor_to_width(moment, "1d") == t("2026-03-10T00:00:00")
    with pytest.raises(ValueError):
        floor_to_width(moment, "1w")


def test_custom_window():
    assert window_range(Window("3h", "1h", buckets=3), t("2026-03-10T00:10:00")) == (
        t("2026-03-09T22:00:00"), t("2026-03-10T01:00:00"))
