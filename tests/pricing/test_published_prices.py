"""Every model's rates against the published figures, transcribed here by hand, not read from the data file."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from importlib import resources
from typing import Any

import pytest
import yaml

from exporter.pricing import PriceTable, default_table, load_table

M = 1_000_000
TODAY = datetime(2026, 12, 1, 12, tzinfo=UTC)

# The pricing page (USD per million tokens): in, 5m write, 1h write, cache read, out.
PUBLISHED = {
    "claude-fable-5": ("10", "12.50", "20", "1.00", "50"),
    "claude-mythos-5": ("10", "12.50", "20", "1.00", "50"),
    "claude-fable-5-1": ("10", "12.50", "20", "0.25", "50"),
    "claude-mythos-5-1": ("10", "12.50", "20", "0.25", "50"),
    "claude-fable-5-2": ("8", "10", "16", "0.20", "40"),
    "claude-mythos-5-2": ("8", "10", "16", "0.20", "40"),
    "claude-opus-5-5": ("4", "5", "8", "0.20", "20"),
    "claude-opus-5": ("5", "6.25", "10", "0.50", "25"),
    "claude-opus-4-8": ("5", "6.25", "10", "0.50", "25"),
    "claude-opus-4-7": ("5", "6.25", "10", "0.50", "25"),
    "claude-opus-4-6": ("5", "6.25", "10", "0.50", "25"),
    "claude-opus-4-5-20251101": ("5", "6.25", "10", "0.50", "25"),
    "claude-opus-4-1": ("15", "18.75", "30", "1.50", "75"),
    "claude-opus-4": ("15", "18.75", "30", "1.50", "75"),
    "claude-sonnet-5-5": ("2", "2.50", "4", "0.10", "10"),  # the read cut of 2026-10-07
    "claude-sonnet-5": ("2", "2.50", "4", "0.20", "10"),
    "claude-sonnet-4-6": ("3", "3.75", "6", "0.30", "15"),
    "claude-sonnet-4-5-20250929": ("3", "3.75", "6", "0.30", "15"),
    "claude-sonnet-4-20250514": ("3", "3.75", "6", "0.30", "15"),
    "claude-3-7-sonnet": ("3", "3.75", "6", "0.30", "15"),
    "claude-3-opus": ("15", "18.75", "30", "1.50", "75"),
    "claude-haiku-5-5": ("0.10", "0.125", "0.20", "0.01", "0.50"),  # prompt <= 100k
    "claude-haiku-4-5-20251001": ("1", "1.25", "2", "0.10", "5"),
    "claude-3-5-haiku-20241022": ("0.80", "1.00", "1.60", "0.08", "4"),
    "claude-3-haiku": ("0.25", "0.30", "0.50", "0.03", "1.25"),
}

# The pricing page's batch column (in / out).
PUBLISHED_BATCH = {
    "claude-fable-5": ("5", "25"),
    "claude-opus-5": ("2.50", "12.50"),
    "claude-opus-4-5-20251101": ("2.50", "12.50"),
    "claude-opus-4-1": ("7.50", "37.50"),
    "claude-sonnet-5": ("1", "5"),
    "claude-sonnet-4-5-20250929": ("1.50", "7.50"),
    "claude-haiku-4-5-20251001": ("0.50", "2.50"),
    "claude-3-5-haiku-20241022": ("0.40", "2"),
}

KINDS = ("input", "cache_write_5m", "cache_write_1h", "cache_read", "output")


def one_million(kind: str) -> dict[str, Any]:
    return {kind: M}


@pytest.fixture(scope="module")
def table() -> PriceTable:
    return default_table()


@pytest.mark.parametrize("model", sorted(PUBLISHED))
def test_rates_per_million_tokens(table: PriceTable, model: str) -> None:
    for kind, expected in zip(KINDS, PUBLISHED[model], strict=True):
        assert table.price(model, at=TODAY, **one_million(kind)) == Decimal(expected), kind


@pytest.mark.parametrize("model", sorted(PUBLISHED_BATCH))
def test_batch_column(table: PriceTable, model: str) -> None:
    expected_in, expected_out = PUBLISHED_BATCH[model]
    assert table.price(model, at=TODAY, input=M, service_tier="batch") == Decimal(expected_in)
    assert table.price(model, at=TODAY, output=M, service_tier="batch") == Decimal(expected_out)


def test_every_table_model_is_transcribed(table: PriceTable) -> None:
    # A model added to the data file without a transcription here would go unchecked.
    transcribed = {table.model(m).id for m in PUBLISHED}  # type: ignore[union-attr]
    assert {m.id for m in table.models} == transcribed


def test_the_shipped_file_is_valid_and_dated() -> None:
    text = resources.files("exporter.pricing").joinpath("prices.yaml").read_text(encoding="utf-8")
    raw = yaml.safe_load(text)
    assert isinstance(raw["version"], int) and raw["version"] >= 1
    assert isinstance(raw["checked"], date)
    table = load_table(text)
    assert table.version == raw["version"]
    assert table.checked == raw["checked"]
    assert len(table.models) == len(PUBLISHED)
