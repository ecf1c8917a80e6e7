"""The price table in memory and the pure function that prices one usage row."""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal

TOKEN_KINDS = ("input", "cache_write_5m", "cache_write_1h", "cache_read", "output")
MILLION = Decimal(1_000_000)
ONE = Decimal(1)

# Why a row has no price. Stable strings: callers may use them as metric label values.
NO_MODEL = "no_model"
UNKNOWN_MODEL = "unknown_model"
UNPRICED_TIER = "unpriced_tier"
UNKNOWN_INFERENCE_GEO = "unknown_inference_geo"
UNKNOWN_SPEED = "unknown_speed"
FAST_NOT_OFFERED = "fast_not_offered"
NO_FAST_MODE = "no_fast_mode"

# A usage report row knows no prompt length, but its context_window band gives a lower bound.
IMPLIED_PROMPT_TOKENS = {"200k-1M": 200_001}

_DATED_ID = re.compile(r"^(.+)-\d{8}$")
_RESOLVED_CACHE_SIZE = 4096


@dataclass(frozen=True)
class Rates:
    """USD per million tokens, per token kind; ``input`` is uncached input."""

    input: Decimal
    cache_write_5m: Decimal
    cache_write_1h: Decimal
    cache_read: Decimal
    output: Decimal

    def values(self) -> tuple[Decimal, Decimal, Decimal, Decimal, Decimal]:
        """In TOKEN_KINDS order."""
        return (self.input, self.cache_write_5m, self.cache_write_1h, self.cache_read, self.output)

    def scaled(self, factor: Decimal) -> Rates:
        return Rates(*(rate * factor for rate in self.values()))


@dataclass(frozen=True)
class Band:
    """Rates for the whole request when its prompt exceeds ``above`` tokens, between two dates."""

    above: int
    rates: Rates
    effective_from: date | None = None
    until: date | None = None  # the first day it no longer applies


@dataclass(frozen=True)
class FastMode:
    """Rates with speed ``fast``, between two dates."""

    rates: Rates
    effective_from: date | None = None
    until: date | None = None


@dataclass(frozen=True)
class ModelPrices:
    """One model's prices through time, as the data file (or a configuration override) gives them."""

    id: str  # the dateless id; always matched
    name: str
    rates: tuple[tuple[date | None, Rates], ...]  # successive standard rates by effective_from
    aliases: tuple[str, ...] = ()
    data_residency: bool = False  # whether inference_geo multipliers apply
    prompt_bands: tuple[Band, ...] = ()
    fast: tuple[FastMode, ...] = ()
    source: str = "table"  # or "config"

    @property
    def ids(self) -> tuple[str, ...]:
        return (self.id, *self.aliases)


@dataclass(frozen=True)
class Tier:
    multiplier: Decimal
    fast_mode: bool = True  # whether speed "fast" is offered with this tier


@dataclass(frozen=True)
class RatesInForce:
    """What a model charges on one day: standard rates, prompt-length bands (ascending), fast mode."""

    standard: Rates
    bands: tuple[tuple[int, Rates], ...]
    fast: Rates | None


@dataclass(frozen=True)
class Unpriced:
    """A row the table cannot price, and why: never a silent zero."""

    reason: str  # one of the constants above
    detail: str


@dataclass
class _Segment:
    """One stretch of time in which nothing about a model's prices changes."""

    in_force: RatesInForce
    band_floors: tuple[int, ...]
    # Per-token USD by (band index, fast, tier multiplier, geo multiplier); filled on first use.
    per_token: dict[tuple[int, bool, Decimal, Decimal], tuple[Decimal, ...]] = field(default_factory=dict)


@dataclass
class _Compiled:
    prices: ModelPrices
    starts: list[float]  # Unix seconds at which each segment begins; the first is -inf
    segments: list[_Segment]

    def segment(self, timestamp: float) -> _Segment:
        return self.segments[bisect_right(self.starts, timestamp) - 1]


def _midnight(day: date) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


def _active(effective_from: date | None, until: date | None, start: float) -> bool:
    return (effective_from is None or _midnight(effective_from) <= start) and (
        until is None or start < _midnight(until))


def _compile(prices: ModelPrices) -> _Compiled:
    """Split a model's history at every date on which any of its rates starts or stops."""
    days: set[date] = {d for d, _ in prices.rates if d is not None}
    periods: list[Band | FastMode] = [*prices.prompt_bands, *prices.fast]
    for period in periods:
        days.update(d for d in (period.effective_from, period.until) if d is not None)
    starts = [-math.inf, *(_midnight(d) for d in sorted(days))]
    segments = []
    for start in starts:
        standard = prices.rates[0][1]
        for effective_from, rates in prices.rates:
            if effective_from is None or _midnight(effective_from) <= start:
                standard = rates
        bands = tuple(sorted((b.above, b.rates) for b in prices.prompt_bands
                             if _active(b.effective_from, b.until, start)))
        fast = next((f.rates for f in prices.fast if _active(f.effective_from, f.until, start)), None)
        segments.append(_Segment(RatesInForce(standard, bands, fast), tuple(above for above, _ in bands)))
    return _Compiled(prices, starts, segments)


def timestamp(at: datetime | float) -> float:
    """Unix seconds; a naive datetime is UTC."""
    if isinstance(at, datetime):
        return (at if at.tzinfo is not None else at.replace(tzinfo=UTC)).timestamp()
    return float(at)


class PriceTable:
    """Every model's rates through time, the modifiers, and a negotiated discount.

    Immutable once built; look-ups are precomputed per model and cached per (model id) and per
    (segment, band, speed, tier, geo), so pricing a row is a few dict look-ups and six
    multiplications.
    """

    def __init__(self, *, version: int, checked: date, models: Iterable[ModelPrices],
                 service_tiers: Mapping[str, Tier], inference_geos: Mapping[str, Decimal],
                 web_search_per_1000: Decimal, cache_multipliers: Mapping[str, Decimal],
                 discount: Decimal = Decimal(0)):
        self.version = version
        self.checked = checked
        self.models: tuple[ModelPrices, ...] = tuple(models)
        self.service_tiers = dict(service_tiers)
        self.inference_geos = dict(inference_geos)
        self.web_search_per_1000 = web_search_per_1000
        # Published cache multipliers of input: fill the cache rates an override leaves out.
        self.cache_multipliers = dict(cache_multipliers)
        self.discount = discount
        self._factor = ONE - discount
        self._per_search = web_search_per_1000 / 1000 * self._factor
        self._compiled = {m.id: _compile(m) for m in self.models}
        self._by_id = {i: self._compiled[m.id] for m in self.models for i in m.ids}
        self._resolved: dict[str, _Compiled | None] = {}

    def __repr__(self) -> str:
        return (f"PriceTable(version={self.version}, checked={self.checked.isoformat()}, "
                f"models={len(self.models)}, discount={self.discount})")

    def model(self, model_id: str) -> ModelPrices | None:
        """The model an id names: exactly, or with a ``-YYYYMMDD`` suffix stripped."""
        compiled = self._resolve(model_id)
        return None if compiled is None else compiled.prices

    def in_force(self, model: ModelPrices, at: datetime | float) -> RatesInForce:
        """The model's list rates at an instant (before tier, geo and discount)."""
        return self._compiled[model.id].segment(timestamp(at)).in_force

    def with_overrides(self, models: Iterable[ModelPrices], discount: Decimal) -> PriceTable:
        """A table where these models replace those of the same id (or are added), and the discount."""
        overrides = {m.id: m for m in models}
        merged = [overrides.pop(m.id, m) for m in self.models]
        return PriceTable(version=self.version, checked=self.checked, models=[*merged, *overrides.values()],
                          service_tiers=self.service_tiers, inference_geos=self.inference_geos,
                          web_search_per_1000=self.web_search_per_1000, cache_multipliers=self.cache_multipliers,
                          discount=discount)

    def _resolve(self, model_id: str) -> _Compiled | None:
        compiled = self._by_id.get(model_id)
        if compiled is not None:
            return compiled
        try:
            return self._resolved[model_id]
        except KeyError:
            pass
        match = _DATED_ID.match(model_id)
        compiled = self._by_id.get(match.group(1)) if match else None
        if len(self._resolved) >= _RESOLVED_CACHE_SIZE:  # ids come from the outside: bound the memo
            self._resolved.clear()
        self._resolved[model_id] = compiled
        return compiled

    def price(self, model: str | None, *, at: datetime | float, input: int = 0, cache_read: int = 0,
              cache_write_5m: int = 0, cache_write_1h: int = 0, output: int = 0, web_searches: int = 0,
              service_tier: str | None = None, context_window: str | None = None,
              inference_geo: str | None = None, speed: str | None = None,
              prompt_tokens: int | None = None) -> Decimal | Unpriced:
        """The cost in USD of one usage row (one request, or a usage-report bucket row), or why it has none.

        ``input`` is uncached input tokens. ``at`` is when the tokens were used (a naive datetime
        is UTC; a float is Unix seconds); rates change at UTC midnight. ``prompt_tokens`` is the
        request's own prompt (uncached input + cache reads + cache writes) when one request is
        priced; without it, ``context_window`` ``200k-1M`` means a prompt above 200k and anything
        else the standard band. A dimension the row does not carry (None) is priced as the
        default: standard tier, speed standard, no data-residency multiplier.

        Unpriced: no or an unknown model; a tier without a published price (``flex``,
        ``flex_discount``, any new one); an unknown geo or speed; fast mode with a tier that does
        not offer it (batch), or on a model or date without fast mode.
        """
        if model is None:
            return Unpriced(NO_MODEL, "the row names no model")
        compiled = self._resolve(model)
        if compiled is None:
            return Unpriced(UNKNOWN_MODEL, f"model {model!r} is not in the price table (version {self.version})")
        tier = self.service_tiers.get("standard" if service_tier is None else service_tier)
        if tier is None:
            return Unpriced(UNPRICED_TIER, f"service tier {service_tier!r} has no published price")
        geo = ONE
        if inference_geo is not None:
            found = self.inference_geos.get(inference_geo)
            if found is None:
                return Unpriced(UNKNOWN_INFERENCE_GEO, f"inference geo {inference_geo!r} has no known price")
            if compiled.prices.data_residency:
                geo = found
        if speed is None or speed == "standard":
            fast = False
        elif speed == "fast":
            fast = True
        else:
            return Unpriced(UNKNOWN_SPEED, f"speed {speed!r} has no known price")
        when = timestamp(at)
        segment = compiled.segment(when)
        band = -1
        if fast:
            if not tier.fast_mode:
                return Unpriced(FAST_NOT_OFFERED, f"fast mode is not offered with the {service_tier} tier")
            if segment.in_force.fast is None:
                day = datetime.fromtimestamp(when, UTC).date().isoformat()
                return Unpriced(NO_FAST_MODE, f"{compiled.prices.id} has no fast mode on {day}")
        elif segment.band_floors:
            prompt = prompt_tokens if prompt_tokens is not None else IMPLIED_PROMPT_TOKENS.get(context_window or "", 0)
            for i, above in enumerate(segment.band_floors):
                if prompt > above:
                    band = i
        key = (band, fast, tier.multiplier, geo)
        per_token = segment.per_token.get(key)
        if per_token is None:
            per_token = segment.per_token[key] = self._per_token(segment.in_force, band, fast,
                                                                 tier.multiplier * geo)
        r_in, r_5m, r_1h, r_read, r_out = per_token
        return (input * r_in + cache_write_5m * r_5m + cache_write_1h * r_1h + cache_read * r_read
                + output * r_out + web_searches * self._per_search)

    def _per_token(self, in_force: RatesInForce, band: int, fast: bool, multiplier: Decimal) -> tuple[Decimal, ...]:
        if fast:
            assert in_force.fast is not None
            rates = in_force.fast
        else:
            rates = in_force.bands[band][1] if band >= 0 else in_force.standard
        factor = multiplier * self._factor / MILLION
        return tuple(rate * factor for rate in rates.values())

