"""Pure conversion of parsed report buckets into immutable per-window snapshots."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from exporter.admin_api import COST_DIMENSIONS, APIKey, Bucket, UsageValues, Workspace
from exporter.config import BUCKET_SECONDS, Window
from exporter.windows import in_window, window_range

V = TypeVar("V", UsageValues, Decimal)

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


def build_usage_snapshot(buckets_by_width: Mapping[str, Sequence[Bucket]], windows: Iterable[Window],
                         group_by: tuple[str, ...], now: datetime) -> UsageSnapshot:
    """Sum each window's buckets per label set; rows that map to the same labels are added."""
    windows = tuple(windows)
    series = _sum_windows(
        buckets_by_width, windows, now, UsageValues(),
        lambda row: (tuple(usage_label(d, v) for d, v in zip(group_by, row.dimensions, strict=True)), row.values))
    # The finest width that holds any data says most precisely how fresh the data is.
    widths = sorted(buckets_by_width, key=BUCKET_SECONDS.__getitem__)
    stamps = (_data_timestamp(buckets_by_width[width], now) for width in widths)
    return UsageSnapshot(group_by, tuple(w.name for w in windows), series,
                         next((s for s in stamps if s is not None), None))


def build_cost_snapshot(buckets: Sequence[Bucket], windows: Iterable[Window], now: datetime) -> CostSnapshot:
    """Sum cents exactly with Decimal per window and label set, then convert to dollars."""
    windows = tuple(w for w in windows if w.bucket_width == "1d")
    cents = _sum_windows(
        {"1d": buckets}, windows, now, Decimal(0),
        lambda row: (tuple(cost_label(d, v) for d, v in zip(COST_DIMENSIONS, row.dimensions, strict=True)),
                     row.amount_cents))
    series = {labels: {name: amount / 100 for name, amount in per_window.items()}
              for labels, per_window in cents.items()}
    return CostSnapshot(tuple(w.name for w in windows), series, _data_timestamp(buckets, now))


def _sum_windows(
    buckets_by_width: Mapping[str, Sequence[Bucket]], windows: tuple[Window, ...], now: datetime, zero: V,
    labels_and_value: Callable[[Any], tuple[tuple[str, ...], V]],
) -> dict[tuple[str, ...], dict[str, V]]:
    """Per label set, the sum of each window's rows; every label set gets every window (``zero``)."""
    sums: dict[tuple[str, ...], dict[str, V]] = defaultdict(dict)
    for window in windows:
        span = window_range(window, now)
        for bucket in buckets_by_width.get(window.bucket_width, ()):
            if not in_window(bucket.starting_at, span):
                continue
            for row in bucket.rows:
                labels, value = labels_and_value(row)
                per_window = sums[labels]
                per_window[window.name] = per_window.get(window.name, zero) + value
    return {labels: {w.name: per_window.get(w.name, zero) for w in windows} for labels, per_window in sums.items()}


def _data_timestamp(buckets: Iterable[Bucket], now: datetime) -> float | None:
    """End of the newest bucket that held any data (metrics.md: how fresh the data is).

    The bucket in progress ends in the future; its data is only as fresh as the poll, so the
    end is capped at ``now``.
    """
    ends = [b.ending_at for b in buckets if b.rows]
    return min(max(ends), now).timestamp() if ends else None
