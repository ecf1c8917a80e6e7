"""Rate limits: which usage counts against which group, and each window's busiest minute.

Prometheus only ever sees window sums, so the exporter computes from its `1m` buckets how close
the busiest minute came to the organization's limit. The usage report has no request counts,
so `requests_per_minute` has no utilization here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime

from exporter.admin_api import RateLimitGroup
from exporter.config import Window
from exporter.store import BucketStore, LabelTable
from exporter.windows import summing_width, window_range

# Which of a usage row's values (uncached, cache read, 5m write, 1h write, output, web search)
# each limiter counts.
LIMIT_KINDS: dict[str, tuple[int, ...]] = {
    "input_tokens_per_minute": (0, 1, 2, 3),
    "input_tokens_per_minute_cache_aware": (0, 2, 3),  # cache reads do not count
    "output_tokens_per_minute": (4,),
    "tokens_per_minute": (0, 1, 2, 3, 4),
}
_DATE_SUFFIX = re.compile(r"-\d{8}$")


def model_groups(groups: Iterable[RateLimitGroup]) -> dict[str, str]:
    """Model id or alias -> group id, under the ids as listed and with any date suffix removed,
    so usage of `claude-x-20250929` finds a group that lists only `claude-x`, and the reverse."""
    index: dict[str, str] = {}
    for group in groups:
        for model in group.models:
            index.setdefault(model, group.group_id)
            index.setdefault(_DATE_SUFFIX.sub("", model), group.group_id)
    return index


def group_for(model: str, index: Mapping[str, str]) -> str | None:
    return index.get(model) or index.get(_DATE_SUFFIX.sub("", model))


def peak_utilization(store: BucketStore, table: LabelTable, model_position: int, groups: Iterable[RateLimitGroup],
                     windows: Iterable[Window], now: datetime) -> dict[tuple[str, str, str], float]:
    """(group id, limit type, window) -> the busiest minute's tokens of the limiter's kind, summed
    over the group's models, divided by the organization's limit; for the windows of 1m buckets."""
    groups = list(groups)
    index = model_groups(groups)
    limited = [(g.group_id, kind, value) for g in groups for kind, value, _ in g.limits
               if kind in LIMIT_KINDS and value > 0]
    if not limited:
        return {}
    group_of_label: dict[int, str | None] = {}
    result = {}
    for window in windows:
        if summing_width(window, "usage") != "1m" or store.width != "1m":
            continue
        busiest: dict[tuple[str, str], float] = {(g, kind): 0 for g, kind, _ in limited}
        start, end = window_range(window, "1m", now)
        for bucket in store.buckets:
            if not start <= bucket.start < end:
                continue
            per_group: dict[str, list[int]] = {}
            for row, label_id in enumerate(bucket.label_ids):
                if label_id not in group_of_label:
                    group_of_label[label_id] = group_for(table.labels[label_id][model_position], index)
                group_id = group_of_label[label_id]
                if group_id is None:
                    continue
                totals = per_group.setdefault(group_id, [0] * store.stride)
                offset = row * store.stride
                for i in range(store.stride):
                    totals[i] += bucket.values[offset + i]
            for group_id, kind, _ in limited:
                minute = per_group.get(group_id)
                if minute is not None:
                    tokens = sum(minute[i] for i in LIMIT_KINDS[kind])
                    busiest[(group_id, kind)] = max(busiest[(group_id, kind)], tokens)
        for group_id, kind, value in limited:
            result[(group_id, kind, window.name)] = busiest[(group_id, kind)] / value
    return result
