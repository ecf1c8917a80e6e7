"""Spend now: Anthropic's list prices as dated data, and the pure function that prices a usage row."""

from __future__ import annotations

from exporter.pricing.parse import PriceTableError, default_table, load_table, parse_pricing
from exporter.pricing.table import (
    FAST_NOT_OFFERED,
    NO_FAST_MODE,
    NO_MODEL,
    TOKEN_KINDS,
    UNKNOWN_INFERENCE_GEO,
    UNKNOWN_MODEL,
    UNKNOWN_SPEED,
    UNPRICED_TIER,
    ModelPrices,
    PriceTable,
    Rates,
    RatesInForce,
    Unpriced,
)

__all__ = [
    "FAST_NOT_OFFERED",
    "NO_FAST_MODE",
    "NO_MODEL",
    "TOKEN_KINDS",
    "UNKNOWN_INFERENCE_GEO",
    "UNKNOWN_MODEL",
    "UNKNOWN_SPEED",
    "UNPRICED_TIER",
    "ModelPrices",
    "PriceTable",
    "PriceTableError",
    "Rates",
    "RatesInForce",
    "Unpriced",
    "default_table",
    "load_table",
    "parse_pricing",
]
