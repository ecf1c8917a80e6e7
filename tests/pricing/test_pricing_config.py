"""The configuration's pricing overrides and discount, and the strict reading of price tables."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import yaml

from exporter.pricing import NO_FAST_MODE, PriceTableError, Unpriced, default_table, load_table, parse_pricing

M = 1_000_000
TODAY = datetime(2026, 12, 1, 12, tzinfo=UTC)
MODEL_KEYS = "input, cache_write_5m, cache_write_1h, cache_read, output, aliases, data_residency, fast"


def one_million(kind: str) -> dict[str, Any]:
    return {kind: M}


def parsed(data: Any) -> Any:
    table, problems = parse_pricing(data)
    assert problems == []
    return table


def test_nothing_configured_is_the_shipped_table() -> None:
    data: Any
    for data in (None, {}, {"models": {}}):
        table = parsed(data)
        assert table.discount == 0
        assert table.price("claude-opus-5", at=TODAY, input=M) == Decimal(5)


def test_discount_applies_to_everything() -> None:
    table = parsed({"discount": 0.12})
    assert table.discount == Decimal("0.12")
    assert table.price("claude-opus-5", at=TODAY, input=M) == Decimal("4.40")
    assert table.price("claude-opus-5", at=TODAY, output=M, service_tier="batch", inference_geo="us") == \
        Decimal("12.10")
    assert table.price("claude-opus-5", at=TODAY, web_searches=1000) == Decimal("8.80")
    # The shipped table is untouched.
    assert default_table().price("claude-opus-5", at=TODAY, input=M) == Decimal(5)


def test_override_replaces_a_models_rates_at_all_times() -> None:
    table = parsed({"models": {"claude-sonnet-5-5": {"input": 1.5, "output": 7.5}}})
    model = table.model("claude-sonnet-5-5")
    assert model is not None and model.source == "config"
    # Cache rates left out are the published multiples of input: 1.25x, 2x, 0.1x.
    for kind, rate in (("input", "1.5"), ("cache_write_5m", "1.875"), ("cache_write_1h", "3"),
                       ("cache_read", "0.15"), ("output", "7.5")):
        for at in (datetime(2026, 10, 1, tzinfo=UTC), TODAY):
            assert table.price("claude-sonnet-5-5", at=at, **one_million(kind)) == Decimal(rate)
    # Its data residency stays the table's.
    assert table.price("claude-sonnet-5-5", at=TODAY, input=M, inference_geo="us") == Decimal("1.65")


def test_override_drops_fast_mode_unless_given() -> None:
    table = parsed({"models": {"claude-opus-5": {"input": 4, "output": 20}}})
    result = table.price("claude-opus-5", at=TODAY, input=M, speed="fast")
    assert isinstance(result, Unpriced) and result.reason == NO_FAST_MODE
    table = parsed({"models": {"claude-opus-5": {"input": 4, "output": 20, "cache_read": 0.2,
                                                 "fast": {"input": 8, "output": 40}}}})
    assert table.price("claude-opus-5", at=TODAY, cache_read=M) == Decimal("0.2")
    assert table.price("claude-opus-5", at=TODAY, input=M, output=M, speed="fast") == Decimal(48)
    assert table.price("claude-opus-5", at=TODAY, cache_read=M, speed="fast") == Decimal("0.8")


def test_override_by_a_dated_id_or_alias() -> None:
    table = parsed({"models": {"claude-sonnet-4-20250514": {"input": 2, "output": 10}}})
    for model_id in ("claude-sonnet-4", "claude-sonnet-4-0", "claude-sonnet-4-20250514"):
        assert table.price(model_id, at=TODAY, input=M) == Decimal(2)
    assert [m.id for m in table.models].count("claude-sonnet-4") == 1


def test_added_model() -> None:
    table = parsed({"discount": 0.5, "models": {
        "claude-x": {"input": 1, "output": 5, "aliases": ["claude-x-latest"]},
        "claude-y": {"input": 1, "cache_write_5m": 1, "cache_write_1h": 1, "cache_read": 1, "output": 1,
                     "data_residency": False},
    }})
    assert table.price("claude-x-latest", at=TODAY, input=M, output=M) == Decimal(3)
    assert table.price("claude-x-20270101", at=TODAY, input=M) == Decimal("0.5")
    # New models are Claude 4.6 or later: data residency applies unless switched off.
    assert table.price("claude-x", at=TODAY, input=M, inference_geo="us") == Decimal("0.55")
    assert table.price("claude-y", at=TODAY, cache_read=M, inference_geo="us") == Decimal("0.5")
    assert [m.id for m in table.models][-2:] == ["claude-x", "claude-y"]


@pytest.mark.parametrize(("data", "problems"), [
    ([], ["pricing: must be a mapping, got a list"]),
    ({"surcharge": 1}, ["pricing.surcharge: unknown key (allowed: discount, models)"]),
    ({"discount": 1}, ["pricing.discount: must be a number from 0 up to (not including) 1, got 1"]),
    ({"discount": -0.1}, ["pricing.discount: must be a number from 0 up to (not including) 1, got -0.1"]),
    ({"discount": "12%"}, ["pricing.discount: must be a number from 0 up to (not including) 1, got '12%'"]),
    ({"discount": True}, ["pricing.discount: must be a number from 0 up to (not including) 1, got a boolean"]),
    ({"models": ["claude-x"]}, ["pricing.models: must be a mapping, got a list"]),
    ({"models": {"claude-x": 3}}, ["pricing.models.claude-x: must be a mapping, got 3"]),
    ({"models": {"claude-x": None}}, ["pricing.models.claude-x: must be a mapping, got nothing"]),
    ({"models": {7: {"input": 1, "output": 1}}}, ["pricing.models.7: a model id must be a non-empty string"]),
    ({"models": {"claude-x": {"input": "a lot", "output": 5}}},
     ["pricing.models.claude-x.input: must be a non-negative number, got 'a lot'"]),
    ({"models": {"claude-x": {"input": 1, "output": -1}}},
     ["pricing.models.claude-x.output: must be a non-negative number, got -1"]),
    ({"models": {"claude-x": {"input": float("nan"), "output": 1}}},
     ["pricing.models.claude-x.input: must be a non-negative number, got nan"]),
    ({"models": {"claude-x": {"input": 1}}},
     ["pricing.models.claude-x.output: must be a non-negative number, got nothing"]),
    ({"models": {"claude-x": {"inptu": 1, "output": 1}}},
     [f"pricing.models.claude-x.inptu: unknown key (allowed: {MODEL_KEYS})",
      "pricing.models.claude-x.input: must be a non-negative number, got nothing"]),
    ({"models": {"claude-x": {"input": 1, "output": 1, "cache_read": [0.1]}}},
     ["pricing.models.claude-x.cache_read: must be a non-negative number, got a list"]),
    ({"models": {"claude-x": {"input": 1, "output": 1, "data_residency": "yes"}}},
     ["pricing.models.claude-x.data_residency: must be true or false, got 'yes'"]),
    ({"models": {"claude-x": {"input": 1, "output": 1, "aliases": "claude-x-latest"}}},
     ["pricing.models.claude-x.aliases: must be a list, got 'claude-x-latest'"]),
    ({"models": {"claude-x": {"input": 1, "output": 1, "aliases": ["claude-opus-5", ""]}}},
     ["pricing.models.claude-x.aliases[1]: must be a non-empty string, got ''",
      "pricing.models.claude-x.aliases[0]: 'claude-opus-5' already names claude-opus-5"]),
    ({"models": {"claude-opus-5": {"input": 4, "output": 20, "fast": {"input": 8, "outptu": 40}}}},
     [f"pricing.models.claude-opus-5.fast.outptu: unknown key (allowed: {MODEL_KEYS.split(', aliases')[0]})",
      "pricing.models.claude-opus-5.fast.output: must be a non-negative number, got nothing"]),
    ({"models": {"claude-sonnet-4-5": {"input": 3, "output": 15},
                 "claude-sonnet-4-5-20250929": {"input": 2, "output": 10}}},
     ["pricing.models.claude-sonnet-4-5-20250929: names the same model as claude-sonnet-4-5 (claude-sonnet-4-5)"]),
    # Every problem at once.
    ({"discount": 2, "models": {"claude-x": {"input": "a lot", "output": 5}, "claude-y": {"output": 1}}},
     ["pricing.discount: must be a number from 0 up to (not including) 1, got 2",
      "pricing.models.claude-x.input: must be a non-negative number, got 'a lot'",
      "pricing.models.claude-y.input: must be a non-negative number, got nothing"]),
])
def test_bad_pricing_config(data: Any, problems: list[str]) -> None:
    table, found = parse_pricing(data)
    assert found == problems
    # Whatever was valid still applies; the rest is the shipped table.
    assert table.price("claude-haiku-4-5", at=TODAY, input=M) == Decimal(1)


def test_problems_name_the_given_path() -> None:
    _, problems = parse_pricing({"models": {"claude-x": {"input": -2, "output": 1}}}, "exporter.pricing")
    assert problems == ["exporter.pricing.models.claude-x.input: must be a non-negative number, got -2"]


# The data file's own checks: a broken table fails loudly, with paths.

SMALL = """
version: 3
checked: 2026-12-01
service_tiers: {standard: {multiplier: 1}, batch: {multiplier: 0.5, fast_mode: false}}
inference_geos: {global: 1, us: 1.1}
web_search_per_1000: 10
cache_multipliers: {cache_write_5m: 1.25, cache_write_1h: 2, cache_read: 0.1}
models:
  claude-a:
    name: A
    aliases: [claude-a-20260101]
    rates:
      - {input: 1, cache_write_5m: 1.25, cache_write_1h: 2, cache_read: 0.1, output: 5}
    fast:
      - {until: 2026-06-01, input: 2, cache_write_5m: 2.5, cache_write_1h: 4, cache_read: 0.2, output: 10}
"""
RATES = {"input": 1, "cache_write_5m": 1, "cache_write_1h": 1, "cache_read": 1, "output": 1}


def small(**changes: Any) -> dict[str, Any]:
    doc = yaml.safe_load(SMALL)
    model = doc["models"]["claude-a"]
    for key, value in changes.items():
        if value is None:
            model.pop(key, None)
        else:
            model[key] = value
    return doc


def problems_of(doc: Any) -> list[str]:
    with pytest.raises(PriceTableError) as caught:
        load_table(yaml.safe_dump(doc))
    return caught.value.problems


def test_a_small_table_loads() -> None:
    table = load_table(SMALL)
    assert (table.version, table.checked.isoformat()) == (3, "2026-12-01")
    assert table.price("claude-a-20260101", at=datetime(2026, 5, 31, tzinfo=UTC), input=M, speed="fast") == 2


@pytest.mark.parametrize(("doc", "problems"), [
    ({k: v for k, v in small().items() if k != "version"}, ["version: must be a positive integer, got nothing"]),
    ({**small(), "checked": "last week"}, ["checked: must be a date (YYYY-MM-DD), got 'last week'"]),
    ({**small(), "colour": "blue"}, ["colour: unknown key (allowed: version, checked, service_tiers, inference_geos,"
                                     " web_search_per_1000, cache_multipliers, models)"]),
    ({**small(), "service_tiers": {"batch": {"multiplier": 0.5}}}, ["service_tiers: must price the standard tier"]),
    (small(rates=[{"effective_from": "2026-01-01", **RATES}]),
     ["models.claude-a.rates[0].effective_from: must be left out: the first rates apply to all earlier usage"]),
    (small(rates=[RATES, {"effective_from": "2026-03-01", **RATES}, {"effective_from": "2026-02-01", **RATES}]),
     ["models.claude-a.rates[2].effective_from: must be later than the previous rates' (2026-03-01)"]),
    (small(rates=[RATES, RATES]),
     ["models.claude-a.rates[1].effective_from: must be a date (YYYY-MM-DD), got nothing"]),
    (small(rates=[{"input": 1, "output": 5}]),
     [f"models.claude-a.rates[0].{kind}: must be a non-negative number, got nothing"
      for kind in ("cache_write_5m", "cache_write_1h", "cache_read")]),
    (small(fast=[{"until": "2026-06-01", **RATES}, {"effective_from": "2026-05-01", **RATES}]),
     ["models.claude-a.fast[1]: overlaps fast[0]"]),
    (small(fast=[{"effective_from": "2026-06-01", "until": "2026-06-01", **RATES}]),
     ["models.claude-a.fast[0].until: must be after effective_from (2026-06-01)"]),
    (small(fast=None, prompt_bands=[{"above": 0, **RATES}]),
     ["models.claude-a.prompt_bands[0].above: must be a positive number of tokens, got 0"]),
    (small(prompt_bands=[{"above": 100000, **RATES}]),
     ["models.claude-a: fast mode with prompt_bands is not supported: say which rates a fast long prompt pays"]),
    ({**small(), "models": {**small()["models"], "claude-b": {"name": "B", "aliases": ["claude-a-20260101"],
                                                                "rates": [RATES]}}},
     ["models.claude-b.aliases[0]: 'claude-a-20260101' already names claude-a"]),
])
def test_bad_price_tables(doc: Any, problems: list[str]) -> None:
    assert problems_of(doc) == problems
