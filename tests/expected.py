"""What the exporter should report, computed independently from the simulator's own sums."""

from __future__ import annotations

from decimal import Decimal

from exporter.admin_api import UsageValues
from exporter.snapshot import cost_label, usage_label
from exporter.windows import window_range

COST_LABELS = ("workspace_id", "cost_type", "model", "token_type", "service_tier", "context_window",
               "inference_geo")


def expected_usage(org, windows, group_by, now) -> dict[tuple[tuple[str, ...], str], UsageValues]:
    """(label values, window) -> sums, for every label set seen in any window (0 elsewhere)."""
    per_window = {}
    for window in windows:
        start, end = window_range(window, now)
        per_window[window.name] = {
            tuple(usage_label(d, v) for d, v in zip(group_by, key, strict=True)): UsageValues(
                t["uncached_input_tokens"], t["cache_read_input_tokens"], t["cache_creation_5m"],
                t["cache_creation_1h"], t["output_tokens"], t["web_search_requests"])
            for key, t in org.usage_totals(start, end, group_by).items()
        }
    # Rows that map to the same labels (e.g. two nulls) add up; usage_totals keys are distinct already.
    label_sets = {labels for sums in per_window.values() for labels in sums}
    return {(labels, name): sums.get(labels, UsageValues())
            for name, sums in per_window.items() for labels in label_sets}


def expected_cost(org, windows, now) -> dict[tuple[tuple[str, ...], str], Decimal]:
    per_window = {}
    for window in windows:
        if window.bucket_width != "1d":
            continue
        start, end = window_range(window, now)
        per_window[window.name] = {
            tuple(cost_label(d, v) for d, v in zip(COST_LABELS, key, strict=True)): cents / 100
            for key, cents in org.cost_totals(start, end).items()
        }
    label_sets = {labels for sums in per_window.values() for labels in sums}
    return {(labels, name): sums.get(labels, Decimal(0))
            for name, sums in per_window.items() for labels in label_sets}
