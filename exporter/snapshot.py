"""Pure conversion: fetched buckets into the store's rows, and held buckets into window sums.

A snapshot is what the collector renders: per label set and window, the sum at one instant.
It is rebuilt when a poll lands, when the clock moves a window, and when a report goes stale
(then its windowed series are withheld and only its data timestamp is kept).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from exporter.admin_api import (
    COST_DIMENSIONS,
    APIKey,
    Bucket,
    CostRow,
    RateLimitGroup,
    UsageRow,
    UsageValues,
    Workspace,
)
from exporter.config import BUCKET_SECONDS, Window
from exporter.store import BucketStore, LabelTable, StoredBucket, store_bucket
from exporter.windows import summing_width, window_range

# What a null means for a dimension that *is* grouped (metrics.md §1, Labels).
NULL_LABELS = {"workspace_id": "default", "api_key_id": "console"}
USAGE_STRIDE = 6  # the six counters of UsageValues, in their order


@dataclass(frozen=True)
class UsageSnapshot:
    """Usage per label set and window. Every label set has every window (0 where it had none)."""

    label_names: tuple[str, ...]
    series: Mapping[tuple[str, ...], Mapping[str, UsageValues]]
    data_timestamp: float | None
    withheld: bool = False  # the data is older than stale_after: no series
    # (rate-limit group id, limit type, window) -> the busiest minute's share of the limit
    peak_utilization: Mapping[tuple[str, str, str], float] = field(default_factory=dict)


@dataclass(frozen=True)
class CostSnapshot:
    """Cost in USD per label set (COST_DIMENSIONS) and window."""

    series: Mapping[tuple[str, ...], Mapping[str, Decimal]]
    data_timestamp: float | None
    withheld: bool = False  # the data is older than stale_after: no series


@dataclass(frozen=True)
class APIKeysSnapshot:
    keys: tuple[APIKey, ...]


@dataclass(frozen=True)
class WorkspacesSnapshot:
    workspaces: tuple[Workspace, ...]


@dataclass(frozen=True)
class RateLimitsSnapshot:
    """The organization's limits per group, and each listed workspace's effective limits."""

    groups: tuple[RateLimitGroup, ...]
    workspaces: tuple[tuple[str, tuple[RateLimitGroup, ...]], ...]


def usage_label(dimension: str, value: str | None) -> str:
    if value is not None:
        return value
    return NULL_LABELS.get(dimension, "unknown")


def cost_label(dimension: str, value: str | None) -> str:
    if value is not None:
        return value
    return "default" if dimension == "workspace_id" else ""


def store_usage_bucket(bucket: Bucket, group_by: tuple[str, ...], table: LabelTable) -> StoredBucket:
    def labels(row: UsageRow) -> tuple[str, ...]:
        return tuple(usage_label(d, v) for d, v in zip(group_by, row.dimensions, strict=True))

    def values(row: UsageRow) -> tuple[int, ...]:
        v = row.values
        return (v.uncached_input_tokens, v.cache_read_input_tokens, v.cache_creation_5m, v.cache_creation_1h,
                v.output_tokens, v.web_search_requests)

    return store_bucket(bucket, table, labels, values, USAGE_STRIDE, integer=True)


def store_cost_bucket(bucket: Bucket, table: LabelTable) -> StoredBucket:
    def labels(row: CostRow) -> tuple[str, ...]:
        return tuple(cost_label(d, v) for d, v in zip(COST_DIMENSIONS, row.dimensions, strict=True))

    return store_bucket(bucket, table, labels, lambda row: (row.amount_cents,), 1, integer=False)


def build_usage_snapshot(stores: Mapping[str, BucketStore], table: LabelTable, windows: Iterable[Window],
                         group_by: tuple[str, ...], now: datetime, polled_at: datetime,
                         withheld: bool = False,
                         peak_utilization: Mapping[tuple[str, str, str], float] | None = None) -> UsageSnapshot:
    """Sum each window at ``now`` from the stored buckets of its width."""
    series: dict[tuple[str, ...], dict[str, UsageValues]] = {}
    if not withheld:
        for labels, per_window in _window_sums(stores, table, windows, "usage", now, [0] * USAGE_STRIDE).items():
            series[labels] = {name: UsageValues(*values) for name, values in per_window.items()}
    return UsageSnapshot(group_by, series, _data_timestamp(stores, polled_at), withheld,
                         {} if withheld else dict(peak_utilization or {}))


def build_cost_snapshot(stores: Mapping[str, BucketStore], table: LabelTable, windows: Iterable[Window],
                        now: datetime, polled_at: datetime, withheld: bool = False) -> CostSnapshot:
    """Sum cents exactly (Decimal) per window and label set, then convert to dollars."""
    series: dict[tuple[str, ...], dict[str, Decimal]] = {}
    if not withheld:
        for labels, per_window in _window_sums(stores, table, windows, "cost", now, [Decimal(0)]).items():
            series[labels] = {name: values[0] / 100 for name, values in per_window.items()}
    return CostSnapshot(series, _data_timestamp(stores, polled_at), withheld)


def _window_sums(stores: Mapping[str, BucketStore], table: LabelTable, windows: Iterable[Window], report: str,
                 now: datetime, zero: list[Any]) -> dict[tuple[str, ...], dict[str, list[Any]]]:
    """Per label set, each served window's sums; a label set seen in any window gets every one."""
    per_window: dict[str, dict[int, list[Any]]] = {}
    for window in windows:
        width = summing_width(window, report)
        if width is None or width not in stores:
            continue
        per_window[window.name] = stores[width].sums(*window_range(window, width, now))
    label_ids = set().union(*per_window.values())
    return {table.labels[i]: {name: sums.get(i, zero) for name, sums in per_window.items()} for i in label_ids}


def _data_timestamp(stores: Mapping[str, BucketStore], polled_at: datetime) -> float | None:
    """End of the newest bucket that held any data, at the finest width that has data.

    The bucket in progress ends in the future; its data is only as fresh as the poll, so the
    end is capped at the poll's time.
    """
    for width in sorted(stores, key=BUCKET_SECONDS.__getitem__):
        end = stores[width].newest_data_end()
        if end is not None:
            return min(end, polled_at).timestamp()
    return None
