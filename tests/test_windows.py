"""Window arithmetic at minute, hour, day and month boundaries, with an injected clock."""

from __future__ import annotations

from datetime import UTC, datetime, timezone

import pytest

from exporter.config import DEFAULT_WINDOWS, Window
from exporter.windows import (
    floor_to_width,
    needed_range,
    next_boundary,
    summing_width,
    widths_needed,
    window_range,
)

WINDOWS = {w.name: w for w in DEFAULT_WINDOWS}


def t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# The default windows' widths, as metrics.md's table gives them.
@pytest.mark.parametrize("name,usage,cost", [
    ("1h", "1m", None), ("24h", "1m", None), ("7d", "1h", "1d"), ("30d", "1h", "1d"),
    ("today", "1h", "1d"), ("month", "1h", "1d"),
])
def test_default_windows_are_summed_from_the_widths_of_the_contract(name, usage, cost):
    assert summing_width(WINDOWS[name], "usage") == usage
    assert summing_width(WINDOWS[name], "cost") == cost


def test_widths_follow_the_windows():
    assert widths_needed(DEFAULT_WINDOWS, "usage") == ("1m", "1h")
    assert widths_needed(DEFAULT_WINDOWS, "cost") == ("1d",)
    assert widths_needed([Window("6h", span=6 * 3600)], "usage") == ("1m",)
    assert widths_needed([Window("6h", span=6 * 3600)], "cost") == ()
    assert widths_needed([Window("2d", span=2 * 86400), Window("25h", span=25 * 3600)], "cost") == ("1d",)


@pytest.mark.parametrize("name,now,start,end", [
    # usage: the current partial bucket is included: the span ends at the end of the bucket in progress
    ("1h", "2026-03-10T12:34:56", "2026-03-10T11:35:00", "2026-03-10T12:35:00"),
    ("1h", "2026-03-10T12:00:00", "2026-03-10T11:01:00", "2026-03-10T12:01:00"),
    ("1h", "2026-03-10T00:00:30", "2026-03-09T23:01:00", "2026-03-10T00:01:00"),
    ("24h", "2026-03-10T12:34:56", "2026-03-09T12:35:00", "2026-03-10T12:35:00"),
    ("24h", "2026-03-01T00:59:59", "2026-02-28T01:00:00", "2026-03-01T01:00:00"),
    ("7d", "2026-03-10T12:00:00", "2026-03-03T13:00:00", "2026-03-10T13:00:00"),
    ("30d", "2026-03-10T12:30:00", "2026-02-08T13:00:00", "2026-03-10T13:00:00"),
    ("today", "2026-03-10T23:59:59", "2026-03-10T00:00:00", "2026-03-11T00:00:00"),
    ("today", "2026-03-11T00:00:00", "2026-03-11T00:00:00", "2026-03-11T01:00:00"),
    ("month", "2026-03-10T12:00:00", "2026-03-01T00:00:00", "2026-03-10T13:00:00"),
    ("month", "2026-03-01T00:00:00", "2026-03-01T00:00:00", "2026-03-01T01:00:00"),
    ("month", "2026-02-28T23:59:59", "2026-02-01T00:00:00", "2026-03-01T00:00:00"),
    ("month", "2024-12-31T23:00:00", "2024-12-01T00:00:00", "2025-01-01T00:00:00"),
])
def test_usage_window_range(name, now, start, end):
    window = WINDOWS[name]
    assert window_range(window, summing_width(window, "usage"), t(now)) == (t(start), t(end))


@pytest.mark.parametrize("name,now,start,end", [
    ("7d", "2026-03-10T12:00:00", "2026-03-04T00:00:00", "2026-03-11T00:00:00"),
    ("30d", "2026-03-10T12:00:00", "2026-02-09T00:00:00", "2026-03-11T00:00:00"),
    ("today", "2026-03-11T00:00:00", "2026-03-11T00:00:00", "2026-03-12T00:00:00"),
    ("month", "2026-02-28T23:59:59", "2026-02-01T00:00:00", "2026-03-01T00:00:00"),
    ("month", "2026-03-01T00:00:00", "2026-03-01T00:00:00", "2026-03-02T00:00:00"),
])
def test_cost_window_range(name, now, start, end):
    assert window_range(WINDOWS[name], "1d", t(now)) == (t(start), t(end))


def test_a_zone_other_than_utc_is_converted_first():
    from datetime import timedelta
    plus_two = timezone(timedelta(hours=2))
    now = datetime(2026, 3, 11, 1, 30, tzinfo=plus_two)  # 23:30 UTC on the 10th
    assert window_range(WINDOWS["today"], "1d", now) == (t("2026-03-10T00:00:00"), t("2026-03-11T00:00:00"))


def test_needed_range_covers_the_widest_window_of_a_width():
    # on the 31st the month window (31 days) is wider than 30d
    assert needed_range(DEFAULT_WINDOWS, "cost", "1d", t("2026-03-31T08:00:00")) == (
        t("2026-03-01T00:00:00"), t("2026-04-01T00:00:00"))
    # early in the month, 30d is the widest
    assert needed_range(DEFAULT_WINDOWS, "cost", "1d", t("2026-03-02T08:00:00")) == (
        t("2026-02-01T00:00:00"), t("2026-03-03T00:00:00"))
    assert needed_range(DEFAULT_WINDOWS, "usage", "1m", t("2026-03-02T08:00:30")) == (
        t("2026-03-01T08:01:00"), t("2026-03-02T08:01:00"))
    assert needed_range(DEFAULT_WINDOWS, "usage", "1h", t("2026-03-31T08:00:30")) == (
        t("2026-03-01T00:00:00"), t("2026-03-31T09:00:00"))
    assert needed_range(DEFAULT_WINDOWS, "cost", "1m", t("2026-03-31T08:00:30")) is None


def test_next_boundary_is_the_end_of_the_finest_bucket_in_progress():
    assert next_boundary(("1m", "1h"), t("2026-03-10T23:59:30")) == t("2026-03-11T00:00:00")
    assert next_boundary(("1h",), t("2026-03-10T23:05:00")) == t("2026-03-11T00:00:00")
    assert next_boundary(("1d",), t("2026-03-31T23:05:00")) == t("2026-04-01T00:00:00")
    assert next_boundary((), t("2026-03-31T23:05:00")) is None


def test_floor():
    moment = t("2026-03-10T12:34:56.789")
    assert floor_to_width(moment, "1m") == t("2026-03-10T12:34:00")
    assert floor_to_width(moment, "1h") == t("2026-03-10T12:00:00")
    assert floor_to_width(moment, "1d") == t("2026-03-10T00:00:00")
    with pytest.raises(ValueError):
        floor_to_width(moment, "1w")


def test_custom_window():
    assert window_range(Window("3h", span=3 * 3600), "1m", t("2026-03-10T00:10:00")) == (
        t("2026-03-09T21:11:00"), t("2026-03-10T00:11:00"))
