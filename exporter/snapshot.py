"""Pure conversion of parsed report buckets into immutable per-window snapshots."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from exporter.admin_api import COST_DIMENSIONS, APIKey, Bucket, CostRow, UsageRow, UsageValues, Workspace
from exporter.config import BUCKET_SECONDS, Window
from exporter.windows import in_window, window_range

# What a null means for a dimension that *is* grouped (metrics.md §1, Labels).
NULL_LABELS = {"workspace_id": "default", "api_key_id": "console"}


@dataclass(frozen=True)
class UsageSnapshot:
    """Usage per label set and window. Every label set has every window (0 where it had none)."""

    label_names: tuple[str, ...]
    windows: tuple[str, ...]
    series: Mapping[tuple[str, ...], Mapping[str, UsageValues]]
    data_timestamp: float | None


@dataclass(frozen=True)
class CostSnapshot:
    """Cost in USD per label set (COST_DIMENSIONS) and window."""

    windows: tuple[str, ...]
    series: Mapping[tuple[str, ...], Mapping[str, Decimal]]
    data_timestamp: float | None


@dataclass(frozen=True)
class APIKeysSnapshot:
    keys: tuple[APIKey, ...]


@dataclass(frozen=True)
class WorkspacesSnapshot:
    workspaces: tuple[Workspace, ...]


def usage_label(dimension: str, value: str | None) -> str:
    if value is not None:
        return value
    return NULL_LABELS.get(dimension, "unknown")


def cost_label(dimension: str, value: str | None) -> str:
    if value is not None:
        return value
    return "default" if dimension == "workspace_id" else ""


def build_usage_snapshot(buckets_by_width: Mapping[str, Iterable[Bucket]], windows: Iterable[Window],
                         group_by: tuple[str, ...], now: datetime) -> UsageSnapshot:
    """Sum each window's buckets per label set; rows that map to the same labels are added."""
    windows = tuple(windows)
    sums: dict[tuple[str, ...], dict[str, UsageValues]] = defaultdict(dict)
    zero = UsageValues()
    for window in windows:
        span = window_range(window, now)
        for bucket in buckets_by_width.get(window.bucket_width, ()):
            if not in_window(bucket.starting_at, span):
                continue
            for row in bucket.rows:
                assert isinstance(row, UsageRow)
                labels = tuple(usage_label(d, v) for d, v in zip(group_by, row.dimensions, strict=True))
                per_window = sums[labels]
                per_window[window.name] = per_window.get(window.name, zero) + row.values
    names = tuple(w.name for w in windows)
    series = {labels: {name: per_window.get(name, zero) for name in names}
              for labels, per_window in sums.items()}
    # The finest width that holds any data says most precisely how fresh the data is.
    widths = sorted(buckets_by_width, key=BUCKET_SECONDS.__getitem__)
    stamps = (_data_timestamp(buckets_by_width[width], now) for width in widths)
    return UsageSnapshot(group_by, names, series, next((s for s in stamps if s is not None), None))


def build_cost_snapshot(buckets: Iterable[Bucket], windows: Iterable[Window], now: datetime) -> CostSnapshot:
    """Sum cents exactly with Decimal per window and label set, then convert to dollars."""
    windows = tuple(w for w in windows if w.bucket_width == "1d")
    buckets = tuple(buckets)
    sums: dict[tuple[str, ...], dict[str, Decimal]] = defaultdict(dict)
    for window in windows:
        span = window_range(window, now)
        for bucket in buckets:
            if not in_window(bucket.starting_at, span):
                continue
            for row in bucket.rows:
                assert isinstance(row, CostRow)
                labels = tuple(cost_label(d, v) for d, v in zip(COST_DIMENSIONS, row.dimensions, strict=True))
                per_window = sums[labels]
                per_window[window.name] = per_window.get(window.name, Decimal(0)) + row.amount_cents
    names = tuple(w.name for w in windows)
    series = {labels: {name: per_window.get(name, Decimal(0)) / 100 for name in names}
              for labels, per_window in sums.items()}
    return CostSnapshot(names, series, _data_timestamp(buckets, now))


def _data_timestamp(buckets: Iterable[Bucket], now: datetime) -> float | None:
    """End of the newest bucket that held any data (metrics.md: how fresh the data is).

    The bucket in progress ends in the future; its data is only as fresh as the poll, so the
    end is capped at ``now``.
    """
    ends = [b.ending_at for b in buckets if b.rows]
    return min(max(ends), now).timestamp() if ends else None
