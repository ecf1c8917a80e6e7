"""Pure conversion: fetched buckets into the store's rows, and held buckets into window sums.

A snapshot is what the collector renders: per label set and window, the sum at one instant.
It is rebuilt when a poll lands, when the clock moves a window, and when a report goes stale
(then its windowed series are withheld and only its data timestamp is kept).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
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
from exporter.pricing import PriceTable, Unpriced, default_table
from exporter.store import BucketStore, LabelTable, StoredBucket, store_bucket
from exporter.windows import floor_to_width, summing_width, window_range

# What a null means for a dimension that *is* grouped (metrics.md §1, Labels).
NULL_LABELS = {"workspace_id": "default", "api_key_id": "console"}
# A held usage row: the six counters of UsageValues in their order, then its estimated cost in
# picodollars (integers, so sums stay exact) for tokens and for web searches, then the tokens
# of a row the price table could not price.
USAGE_STRIDE = 9
TOKEN_COST, SEARCH_COST, UNPRICED_TOKENS = 6, 7, 8
PICO = Decimal(10) ** 12


@dataclass(frozen=True)
class UsageSnapshot:
    """Usage per label set and window. Every label set has every window (0 where it had none)."""

    label_names: tuple[str, ...]
    series: Mapping[tuple[str, ...], Mapping[str, UsageValues]]
    data_timestamp: float | None
    withheld: bool = False  # the data is older than stale_after: no series
    # (rate-limit group id, limit type, window) -> the busiest minute's share of the limit
    peak_utilization: Mapping[tuple[str, str, str], float] = field(default_factory=dict)
    # per label set and window, the usage priced with the price table, in USD
    estimated_cost: Mapping[tuple[str, ...], Mapping[str, Decimal]] = field(default_factory=dict)
    # (model,) -> window -> tokens the price table could not price
    unpriced_tokens: Mapping[tuple[str, ...], Mapping[str, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class CostSnapshot:
    """Cost in USD per label set (COST_DIMENSIONS) and window."""

    series: Mapping[tuple[str, ...], Mapping[str, Decimal]]
    data_timestamp: float | None
    withheld: bool = False  # the data is older than stale_after: no series
    # (workspace_id, model) -> estimated / reported token cost over the last 7 complete UTC days
    estimate_ratio: Mapping[tuple[str, str], float] = field(default_factory=dict)


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


def store_usage_bucket(bucket: Bucket, group_by: tuple[str, ...], table: LabelTable,
                       prices: PriceTable | None = None) -> StoredBucket:
    """A fetched usage bucket in the store's form, each row priced at the bucket's start."""
    prices = default_table() if prices is None else prices
    position = {d: i for i, d in enumerate(group_by)}

    def labels(row: UsageRow) -> tuple[str, ...]:
        return tuple(usage_label(d, v) for d, v in zip(group_by, row.dimensions, strict=True))

    def dimension(row: UsageRow, name: str) -> str | None:
        return row.dimensions[position[name]] if name in position else None

    def values(row: UsageRow) -> tuple[int, ...]:
        v = row.values
        tokens = dict(input=v.uncached_input_tokens, cache_read=v.cache_read_input_tokens,
                      cache_write_5m=v.cache_creation_5m, cache_write_1h=v.cache_creation_1h,
                      output=v.output_tokens)
        where = dict(at=bucket.starting_at, service_tier=dimension(row, "service_tier"),
                     context_window=dimension(row, "context_window"),
                     inference_geo=dimension(row, "inference_geo"), speed=dimension(row, "speed"))
        token_cost = prices.price(dimension(row, "model"), **tokens, **where)  # type: ignore[arg-type]
        search_cost = prices.price(dimension(row, "model"), web_searches=v.web_search_requests,
                                   **where)  # type: ignore[arg-type]
        if isinstance(token_cost, Unpriced) or isinstance(search_cost, Unpriced):
            priced: tuple[int, int, int] = (0, 0, sum(tokens.values()))
        else:
            priced = (int((token_cost * PICO).to_integral_value()), int((search_cost * PICO).to_integral_value()), 0)
        return (v.uncached_input_tokens, v.cache_read_input_tokens, v.cache_creation_5m, v.cache_creation_1h,
                v.output_tokens, v.web_search_requests, *priced)

    return store_bucket(bucket, table, labels, values, USAGE_STRIDE, integer=True)


def store_cost_bucket(bucket: Bucket, table: LabelTable) -> StoredBucket:
    def labels(row: CostRow) -> tuple[str, ...]:
        return tuple(cost_label(d, v) for d, v in zip(COST_DIMENSIONS, row.dimensions, strict=True))

    return store_bucket(bucket, table, labels, lambda row: (row.amount_cents,), 1, integer=False)


def build_usage_snapshot(stores: Mapping[str, BucketStore], table: LabelTable, windows: Iterable[Window],
                         group_by: tuple[str, ...], now: datetime, polled_at: datetime,
                         withheld: bool = False,
                         peak_utilization: Mapping[tuple[str, str, str], float] | None = None,
                         fetch_group_by: tuple[str, ...] | None = None) -> UsageSnapshot:
    """Sum each window at ``now`` from the stored buckets of its width.

    The buckets hold rows grouped by ``fetch_group_by`` (what pricing needs too); the series are
    summed back to the configured ``group_by``.
    """
    if withheld:
        return UsageSnapshot(group_by, {}, _data_timestamp(stores, polled_at), True)
    fetched = group_by if fetch_group_by is None else fetch_group_by
    keep = [fetched.index(d) for d in group_by]
    model = fetched.index("model") if "model" in fetched else None
    per_window: dict[str, dict[int, list[Any]]] = {}
    for window in windows:
        width = summing_width(window, "usage")
        if width is not None and width in stores:
            per_window[window.name] = stores[width].sums(*window_range(window, width, now), memo_key=window.name)
    names = tuple(per_window)
    totals: dict[tuple[str, ...], dict[str, list[int]]] = {}
    unpriced: dict[tuple[str, ...], dict[str, int]] = {}
    for name, sums in per_window.items():
        for label_id, values in sums.items():
            held = table.labels[label_id]
            labels = tuple(held[i] for i in keep)
            total = totals.setdefault(labels, {}).setdefault(name, [0] * USAGE_STRIDE)
            for i, value in enumerate(values):
                total[i] += value
            if values[UNPRICED_TOKENS] and model is not None:
                by_model = unpriced.setdefault((held[model],), dict.fromkeys(names, 0))
                by_model[name] += values[UNPRICED_TOKENS]
    zero = [0] * USAGE_STRIDE
    series = {labels: {n: UsageValues(*per.get(n, zero)[:6]) for n in names} for labels, per in totals.items()}
    cost = {labels: {n: Decimal(per.get(n, zero)[TOKEN_COST] + per.get(n, zero)[SEARCH_COST]) / PICO for n in names}
            for labels, per in totals.items()}
    return UsageSnapshot(group_by, series, _data_timestamp(stores, polled_at), False,
                         dict(peak_utilization or {}), cost, unpriced)


def build_cost_snapshot(stores: Mapping[str, BucketStore], table: LabelTable, windows: Iterable[Window],
                        now: datetime, polled_at: datetime, withheld: bool = False,
                        estimate_ratio: Mapping[tuple[str, str], float] | None = None) -> CostSnapshot:
    """Sum cents exactly (Decimal) per window and label set, then convert to dollars."""
    series: dict[tuple[str, ...], dict[str, Decimal]] = {}
    if not withheld:
        for labels, per_window in _window_sums(stores, table, windows, "cost", now, [Decimal(0)]).items():
            series[labels] = {name: values[0] / 100 for name, values in per_window.items()}
    return CostSnapshot(series, _data_timestamp(stores, polled_at), withheld,
                        {} if withheld else dict(estimate_ratio or {}))


RECONCILED_DAYS = 7


def estimate_ratio(usage: BucketStore, usage_table: LabelTable, fetch_group_by: tuple[str, ...],
                   cost: BucketStore, cost_table: LabelTable, now: datetime) -> dict[tuple[str, str], float]:
    """(workspace_id, model) -> the usage priced with the table ÷ the cost report's token cost,
    over the last 7 complete UTC days (today is left out: the cost report lags). Only pairs the
    report has token cost for; none at all unless the hourly usage held reaches back that far."""
    end = floor_to_width(now, "1d")
    start = end - timedelta(days=RECONCILED_DAYS)
    if usage.width != "1h" or cost.width != "1d" or usage.covered is None or usage.covered[0] > start:
        return {}
    workspace, model = fetch_group_by.index("workspace_id"), fetch_group_by.index("model")
    estimated: dict[tuple[str, str], int] = {}
    # Kept between calls under a key no window name can be: the 7 days move only at midnight.
    for label_id, values in usage.sums(start, end, memo_key=("estimate_ratio",)).items():
        labels = usage_table.labels[label_id]
        key = (labels[workspace], labels[model])
        estimated[key] = estimated.get(key, 0) + values[TOKEN_COST]
    reported: dict[tuple[str, str], Decimal] = {}
    cost_type, cost_workspace, cost_model = (COST_DIMENSIONS.index(d) for d in ("cost_type", "workspace_id", "model"))
    for label_id, (cents,) in cost.sums(start, end).items():
        labels = cost_table.labels[label_id]
        if labels[cost_type] == "tokens" and labels[cost_model]:
            key = (labels[cost_workspace], labels[cost_model])
            reported[key] = reported.get(key, Decimal(0)) + cents
    return {key: float(Decimal(estimated.get(key, 0)) / PICO / (cents / 100))
            for key, cents in reported.items() if cents > 0}


def _window_sums(stores: Mapping[str, BucketStore], table: LabelTable, windows: Iterable[Window], report: str,
                 now: datetime, zero: list[Any]) -> dict[tuple[str, ...], dict[str, list[Any]]]:
    """Per label set, each served window's sums; a label set seen in any window gets every one."""
    per_window: dict[str, dict[int, list[Any]]] = {}
    for window in windows:
        width = summing_width(window, report)
        if width is None or width not in stores:
            continue
        # No memo_key: cost is Decimal, and sums kept by adding and subtracting could round
        # differently from a fresh sum; the cost report's 1d buckets are few to sum anyway.
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
