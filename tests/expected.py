"""What the exporter should report, computed independently from the simulator's own sums.

The window spans and null labels are written out here from the metric contract's tables,
not taken from the exporter's code, so a bug there cannot hide in both places.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from exporter.admin_api import UsageValues

COST_LABELS = ("workspace_id", "cost_type", "model", "token_type", "service_tier", "context_window",
               "inference_geo")
MINUTE, HOUR, DAY = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)


def usage_spans(now: datetime) -> dict[str, tuple[datetime, datetime]]:
    """[start, end) of bucket starts per default window of the usage report (metrics.md §1,
    Windows): 1h and 24h from 1m buckets, the rest from 1h buckets, the current bucket included."""
    minute = now.replace(second=0, microsecond=0)
    hour = minute.replace(minute=0)
    day = hour.replace(hour=0)
    return {
        "1h": (minute - 59 * MINUTE, minute + MINUTE),  # the 60 newest minutes, this one included
        "24h": (minute - 1439 * MINUTE, minute + MINUTE),  # the 1,440 newest minutes
        "7d": (hour - 167 * HOUR, hour + HOUR),  # the 168 newest hours
        "30d": (hour - 719 * HOUR, hour + HOUR),  # the 720 newest hours
        "today": (day, hour + HOUR),
        "month": (day.replace(day=1), hour + HOUR),
    }


def cost_spans(now: datetime) -> dict[str, tuple[datetime, datetime]]:
    """The same for the cost report, which has only 1d buckets: no 1h or 24h window."""
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return {
        "7d": (day - 6 * DAY, day + DAY),
        "30d": (day - 29 * DAY, day + DAY),
        "today": (day, day + DAY),
        "month": (day.replace(day=1), day + DAY),
    }


def usage_labels(group_by, key) -> tuple[str, ...]:
    nulls = {"workspace_id": "default", "api_key_id": "console"}
    return tuple(nulls.get(d, "unknown") if v is None else v for d, v in zip(group_by, key, strict=True))


def expected_usage(org, windows, group_by, now, *, data_now=None) -> dict[tuple[tuple[str, ...], str], UsageValues]:
    """(label values, window) -> sums, for every label set seen in any window (0 elsewhere).

    ``data_now``: the simulator's events only up to then (the last poll), summed over the
    windows as they stand at ``now``."""
    spans = usage_spans(now)
    per_window = {}
    for window in windows:
        sums: dict[tuple[str, ...], UsageValues] = {}
        for key, t in org.usage_totals(*spans[window.name], group_by, now=data_now).items():
            labels = usage_labels(group_by, key)
            sums[labels] = sums.get(labels, UsageValues()) + UsageValues(
                t["uncached_input_tokens"], t["cache_read_input_tokens"], t["cache_creation_5m"],
                t["cache_creation_1h"], t["output_tokens"], t["web_search_requests"])
        per_window[window.name] = sums
    label_sets = {labels for sums in per_window.values() for labels in sums}
    return {(labels, name): sums.get(labels, UsageValues())
            for name, sums in per_window.items() for labels in label_sets}


def expected_cost(org, windows, now, *, data_now=None) -> dict[tuple[tuple[str, ...], str], Decimal]:
    """(label values, window) -> US dollars, for the windows of daily buckets only."""
    spans = cost_spans(now)
    per_window = {}
    for window in windows:
        if window.name not in spans:
            continue
        sums: dict[tuple[str, ...], Decimal] = {}
        for key, cents in org.cost_totals(*spans[window.name], now=data_now).items():
            labels = tuple(("default" if d == "workspace_id" else "") if v is None else v
                           for d, v in zip(COST_LABELS, key, strict=True))
            sums[labels] = sums.get(labels, Decimal(0)) + cents / 100
        per_window[window.name] = sums
    label_sets = {labels for sums in per_window.values() for labels in sums}
    return {(labels, name): sums.get(labels, Decimal(0))
            for name, sums in per_window.items() for labels in label_sets}
