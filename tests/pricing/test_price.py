"""Pricing one usage row: dates, ids, tiers, geos, fast mode, prompt bands, web search, unpriced rows."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from exporter.pricing import (
    FAST_NOT_OFFERED,
    NO_FAST_MODE,
    NO_MODEL,
    UNKNOWN_INFERENCE_GEO,
    UNKNOWN_MODEL,
    UNKNOWN_SPEED,
    UNPRICED_TIER,
    PriceTable,
    Unpriced,
    default_table,
)

M = 1_000_000
TODAY = datetime(2026, 12, 1, 12, tzinfo=UTC)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def one_million(kind: str) -> dict[str, Any]:
    return {kind: M}


@pytest.fixture(scope="module")
def table() -> PriceTable:
    return default_table()


def reason(result: Decimal | Unpriced) -> str:
    assert isinstance(result, Unpriced), result
    return result.reason


# Effective dates

def test_sonnet_5_5_cache_read_cut_on_2026_10_07(table: PriceTable) -> None:
    assert table.price("claude-sonnet-5-5", at=utc(2026, 10, 6, 23, 59, 59), cache_read=M) == Decimal("0.20")
    assert table.price("claude-sonnet-5-5", at=utc(2026, 10, 7), cache_read=M) == Decimal("0.10")
    # Only the read changed.
    assert table.price("claude-sonnet-5-5", at=utc(2026, 10, 7), input=M, output=M) == Decimal("12")


def test_dates_are_utc_days(table: PriceTable) -> None:
    # 01:00 in UTC+2 is still 6 October in UTC; a naive datetime is UTC; a float is Unix seconds.
    assert table.price("claude-sonnet-5-5", at=datetime(2026, 10, 7, 1, tzinfo=timezone(timedelta(hours=2))),
                       cache_read=M) == Decimal("0.20")
    assert table.price("claude-sonnet-5-5", at=datetime(2026, 10, 7), cache_read=M) == Decimal("0.10")
    assert table.price("claude-sonnet-5-5", at=utc(2026, 10, 7).timestamp() - 1, cache_read=M) == Decimal("0.20")


@pytest.mark.parametrize(("model", "at", "input_rate", "output_rate"), [
    # Sonnet 4 / 4.5 with the 1M beta: 2x / 1.5x from December 2025, removed by 2026-03-31.
    ("claude-sonnet-4-5-20250929", utc(2025, 11, 30, 23), "3", "15"),
    ("claude-sonnet-4-5-20250929", utc(2025, 12, 1), "6", "22.50"),
    ("claude-sonnet-4-5", utc(2026, 3, 30, 23), "6", "22.50"),
    ("claude-sonnet-4-5", utc(2026, 3, 31), "3", "15"),
    ("claude-sonnet-4-20250514", utc(2026, 1, 15), "6", "22.50"),
    ("claude-sonnet-4", utc(2026, 4, 1), "3", "15"),
    # Opus 4.6 from February 2026 at $10 / $37.50, ended 2026-03-20 for 4.6 and later.
    ("claude-opus-4-6", utc(2026, 1, 31), "5", "25"),
    ("claude-opus-4-6", utc(2026, 2, 1), "10", "37.50"),
    ("claude-opus-4-6", utc(2026, 3, 19, 23), "10", "37.50"),
    ("claude-opus-4-6", utc(2026, 3, 20), "5", "25"),
    # Never a premium for the others.
    ("claude-sonnet-4-6", utc(2026, 3, 1), "3", "15"),
    ("claude-opus-4-5", utc(2026, 3, 1), "5", "25"),
])
def test_long_context_premium_dates(table: PriceTable, model: str, at: datetime, input_rate: str,
                                    output_rate: str) -> None:
    assert table.price(model, at=at, input=M, context_window="200k-1M") == Decimal(input_rate)
    assert table.price(model, at=at, output=M, context_window="200k-1M") == Decimal(output_rate)
    # Below 200k there is no premium, whatever the date.
    assert table.price(model, at=at, input=M, context_window="0-200k") in (Decimal(3), Decimal(5))


def test_long_context_premium_by_prompt_length_and_stacking(table: PriceTable) -> None:
    at = utc(2026, 1, 15)
    assert table.price("claude-sonnet-4-5", at=at, input=M, prompt_tokens=200_000) == Decimal(3)
    assert table.price("claude-sonnet-4-5", at=at, input=M, prompt_tokens=200_001) == Decimal(6)
    # The request's own prompt wins over the report's band.
    assert table.price("claude-sonnet-4-5", at=at, input=M, prompt_tokens=150_000,
                       context_window="200k-1M") == Decimal(3)
    # Stacks with cache multipliers and batch: 2x input is 6; batch halves it; a read is 0.1x.
    batch: dict[str, Any] = {"at": at, "context_window": "200k-1M", "service_tier": "batch"}
    assert table.price("claude-sonnet-4-5", input=M, **batch) == Decimal(3)
    assert table.price("claude-sonnet-4-5", cache_write_5m=M, **batch) == Decimal("3.75")
    assert table.price("claude-sonnet-4-5", cache_write_1h=M, **batch) == Decimal(6)
    assert table.price("claude-sonnet-4-5", cache_read=M, **batch) == Decimal("0.30")
    assert table.price("claude-sonnet-4-5", output=M, **batch) == Decimal("11.25")


# Model ids

@pytest.mark.parametrize(("model_id", "canonical"), [
    ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),  # dated
    ("claude-sonnet-4-5", "claude-sonnet-4-5"),  # dateless
    ("claude-sonnet-4-0", "claude-sonnet-4"),  # alias
    ("claude-sonnet-4-20250514", "claude-sonnet-4"),
    ("claude-3-7-sonnet-latest", "claude-3-7-sonnet"),
    ("claude-opus-4-20250514", "claude-opus-4"),
    ("claude-opus-5-20270101", "claude-opus-5"),  # any date suffix strips
    ("claude-haiku-5-5", "claude-haiku-5-5"),
])
def test_model_ids(table: PriceTable, model_id: str, canonical: str) -> None:
    model = table.model(model_id)
    assert model is not None and model.id == canonical
    assert isinstance(table.price(model_id, at=TODAY, input=1), Decimal)


@pytest.mark.parametrize("model_id", ["claude-sonnet-4-5-2025092", "Claude-Opus-5", "claude-opus-5-fast",
                                      "claude-opus-6", "gpt-5", "", "20250929"])
def test_unknown_model_is_unpriced(table: PriceTable, model_id: str) -> None:
    result = table.price(model_id, at=TODAY, input=1000)
    assert isinstance(result, Unpriced) and result.reason == UNKNOWN_MODEL
    assert repr(model_id) in result.detail
    assert table.model(model_id) is None


def test_no_model_is_unpriced_and_zero_tokens_cost_zero(table: PriceTable) -> None:
    assert reason(table.price(None, at=TODAY, input=1000)) == NO_MODEL
    assert table.price("claude-opus-5", at=TODAY) == Decimal(0)


# Service tiers

@pytest.mark.parametrize("tier", [None, "standard", "priority", "priority_on_demand"])
def test_tiers_at_standard_rates(table: PriceTable, tier: str | None) -> None:
    assert table.price("claude-opus-5", at=TODAY, input=M, output=M, service_tier=tier) == Decimal(30)


def test_batch_halves_every_token_kind(table: PriceTable) -> None:
    tokens: dict[str, Any] = {"input": M, "cache_write_5m": M, "cache_write_1h": M, "cache_read": M, "output": M}
    assert table.price("claude-opus-5", at=TODAY, service_tier="batch", **tokens) == Decimal("23.375")
    assert table.price("claude-opus-5", at=TODAY, **tokens) == Decimal("46.75")


@pytest.mark.parametrize("tier", ["flex", "flex_discount", "scale"])
def test_tiers_without_published_prices_are_unpriced(table: PriceTable, tier: str) -> None:
    # flex_discount says only that some discount applies: neither standard nor any guess.
    result = table.price("claude-opus-5", at=TODAY, input=M, service_tier=tier)
    assert reason(result) == UNPRICED_TIER


# Data residency

@pytest.mark.parametrize(("model", "rate"), [
    ("claude-opus-4-6", "5.5"), ("claude-sonnet-4-6", "3.3"), ("claude-opus-4-8", "5.5"), ("claude-opus-5", "5.5"),
    ("claude-sonnet-5-5", "2.2"), ("claude-haiku-5-5", "0.11"), ("claude-fable-5-2", "8.8"),
    # Before 4.6: no multiplier.
    ("claude-opus-4-5", "5"), ("claude-sonnet-4-5", "3"), ("claude-haiku-4-5", "1"), ("claude-3-haiku", "0.25"),
])
def test_geo_us_is_1_1x_on_4_6_and_later_only(table: PriceTable, model: str, rate: str) -> None:
    assert table.price(model, at=TODAY, input=M, inference_geo="us") == Decimal(rate)


def test_geo_stacks_on_every_kind_and_other_geos(table: PriceTable) -> None:
    assert table.price("claude-opus-4-6", at=TODAY, cache_read=M, inference_geo="us") == Decimal("0.55")
    assert table.price("claude-opus-4-6", at=TODAY, output=M, inference_geo="us") == Decimal("27.5")
    assert table.price("claude-opus-5", at=TODAY, input=M, inference_geo="us", service_tier="batch") == Decimal("2.75")
    for geo in (None, "global", "not_available"):
        assert table.price("claude-opus-4-6", at=TODAY, input=M, inference_geo=geo) == Decimal(5)
    assert reason(table.price("claude-opus-4-6", at=TODAY, input=M, inference_geo="eu")) == UNKNOWN_INFERENCE_GEO


# Fast mode

@pytest.mark.parametrize(("model", "at", "rates"), [
    ("claude-opus-5", TODAY, ("10", "12.50", "20", "1.00", "50")),
    ("claude-opus-4-8", utc(2026, 11, 29, 23), ("10", "12.50", "20", "1.00", "50")),
    ("claude-opus-5-5", TODAY, ("8", "10", "16", "0.40", "40")),
    ("claude-fable-5-2", TODAY, ("16", "20", "32", "0.40", "80")),
    ("claude-mythos-5-2", TODAY, ("16", "20", "32", "0.40", "80")),
])
def test_fast_mode_rates(table: PriceTable, model: str, at: datetime, rates: tuple[str, ...]) -> None:
    kinds = ("input", "cache_write_5m", "cache_write_1h", "cache_read", "output")
    for kind, rate in zip(kinds, rates, strict=True):
        assert table.price(model, at=at, speed="fast", **one_million(kind)) == Decimal(rate), kind


def test_fast_mode_limits(table: PriceTable) -> None:
    # Opus 4.8's fast mode was removed on 2026-11-30; never offered on Sonnet; never with batch.
    result = table.price("claude-opus-4-8", at=utc(2026, 11, 30), input=M, speed="fast")
    assert reason(result) == NO_FAST_MODE
    assert isinstance(result, Unpriced) and result.detail == "claude-opus-4-8 has no fast mode on 2026-11-30"
    assert reason(table.price("claude-sonnet-5", at=TODAY, input=M, speed="fast")) == NO_FAST_MODE
    result = table.price("claude-opus-5", at=TODAY, input=M, speed="fast", service_tier="batch")
    assert reason(result) == FAST_NOT_OFFERED
    assert reason(table.price("claude-opus-5", at=TODAY, input=M, speed="warp")) == UNKNOWN_SPEED
    assert table.price("claude-opus-5", at=TODAY, input=M, speed="standard") == Decimal(5)
    # Stacks with residency.
    assert table.price("claude-opus-5", at=TODAY, input=M, speed="fast", inference_geo="us") == Decimal(11)
    assert table.price("claude-opus-5", at=TODAY, input=M, speed="fast", service_tier="priority") == Decimal(10)


# Haiku 5.5's prompt-length bands

@pytest.mark.parametrize(("prompt", "rates"), [
    (100_000, ("0.10", "0.125", "0.20", "0.01", "0.50")),
    (100_001, ("0.50", "0.625", "1.00", "0.05", "2.50")),
])
def test_haiku_5_5_bands(table: PriceTable, prompt: int, rates: tuple[str, ...]) -> None:
    kinds = ("input", "cache_write_5m", "cache_write_1h", "cache_read", "output")
    for kind, rate in zip(kinds, rates, strict=True):
        assert table.price("claude-haiku-5-5", at=TODAY, prompt_tokens=prompt, **one_million(kind)) == Decimal(rate), kind


def test_haiku_5_5_one_request_and_report_rows(table: PriceTable) -> None:
    # Prompt = 60k uncached + 50k read = 110k > 100k: the whole request, output included, is high band.
    cost = table.price("claude-haiku-5-5", at=TODAY, input=60_000, cache_read=50_000, output=1000,
                       prompt_tokens=60_000 + 50_000)
    assert cost == Decimal("0.035")
    # A report row knows only its context_window: 200k-1M is surely above 100k; otherwise the standard band.
    assert table.price("claude-haiku-5-5", at=TODAY, input=M, context_window="200k-1M") == Decimal("0.50")
    assert table.price("claude-haiku-5-5", at=TODAY, input=M, context_window="0-200k") == Decimal("0.10")
    assert table.price("claude-haiku-5-5", at=TODAY, input=M) == Decimal("0.10")


# Web search and whole rows

def test_web_search_is_10_per_1000(table: PriceTable) -> None:
    assert table.price("claude-sonnet-5", at=TODAY, web_searches=1000) == Decimal(10)
    assert table.price("claude-haiku-4-5", at=TODAY, web_searches=1) == Decimal("0.01")
    # Not tokens: neither the batch tier nor data residency changes them.
    assert table.price("claude-opus-4-6", at=TODAY, web_searches=3, service_tier="batch",
                       inference_geo="us") == Decimal("0.03")


def test_a_whole_row(table: PriceTable) -> None:
    # Opus 4.6, batch, us: per million 5 / 6.25 / 10 / 0.50 / 25 x 0.5 x 1.1.
    cost = table.price("claude-opus-4-6", at=TODAY, input=1000, cache_read=2000, cache_write_5m=300,
                       cache_write_1h=400, output=500, web_searches=2, service_tier="batch", inference_geo="us")
    assert cost == Decimal("0.03340625")


def test_pricing_is_cheap(table: PriceTable) -> None:
    # Called per request in the middleware and per bucket row in the exporter.
    rows = [("claude-opus-5", "standard"), ("claude-sonnet-4-5-20250929", "batch"), ("claude-haiku-5-5", None)]
    start = time.perf_counter()
    for i in range(30_000):
        model, tier = rows[i % 3]
        table.price(model, at=1_790_000_000.0 + i, input=1200, cache_read=3400, cache_write_5m=10, output=560,
                    service_tier=tier, inference_geo="us", context_window="0-200k")
    per_call = (time.perf_counter() - start) / 30_000
    assert per_call < 100e-6, f"{per_call * 1e6:.1f} µs per row"
