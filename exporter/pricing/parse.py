"""Reading prices strictly: the shipped data file and the configuration's ``pricing`` overrides."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

from exporter.pricing.table import TOKEN_KINDS, Band, FastMode, ModelPrices, PriceTable, Rates, Tier
from exporter.yamldoc import DocumentReader

DATA_FILE = "prices.yaml"
CACHE_KINDS = ("cache_write_5m", "cache_write_1h", "cache_read")
_DAY_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class PriceTableError(Exception):
    """Every problem found in a price table, one per line, each naming its path."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def load_table(text: str | None = None) -> PriceTable:
    """The price table shipped in this package (or one given as YAML text), validated.

    Raises PriceTableError listing every problem.
    """
    if text is None:
        text = resources.files(__package__).joinpath(DATA_FILE).read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PriceTableError([f"{DATA_FILE}: invalid YAML: {exc}"]) from None
    reader = _Reader()
    table = reader.table(data)
    if reader.problems or table is None:
        raise PriceTableError(reader.problems or [f"{DATA_FILE}: empty"])
    return table


@lru_cache(maxsize=1)
def default_table() -> PriceTable:
    """The shipped table, read once per process."""
    return load_table()


def parse_pricing(data: Any, path: str = "pricing", *,
                  base: PriceTable | None = None) -> tuple[PriceTable, list[str]]:
    """The configuration's ``pricing`` section applied to ``base`` (default: the shipped table).

    ``{discount: 0.12, models: {claude-x: {input: 3, output: 15, ...}}}``. A model's override
    replaces its rates at all times (dated changes, prompt-length bands and fast mode go with
    them, unless ``fast`` is given); ``input`` and ``output`` are required, a cache rate left out
    is the published multiple of ``input`` (5m write 1.25x, 1h write 2x, read 0.1x). An id the
    table does not know adds a model (``data_residency`` defaults to true for it: new models are
    Claude 4.6 or later). The discount (0 <= discount < 1) applies to every rate, overrides and
    web search included.

    Returns the table and every problem, each naming its path; with problems, the table holds
    whatever parts were valid.
    """
    reader = _Reader()
    table = reader.overrides(data, path, default_table() if base is None else base)
    return table, reader.problems


class _Reader(DocumentReader):
    def describe(self, value: Any) -> str:
        return _describe(value)

    def number(self, value: Any, path: str) -> Decimal | None:
        if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
                or value < 0):
            self.problem(path, f"must be a non-negative number, got {_describe(value)}")
            return None
        return Decimal(str(value))  # via str: 0.1 stays 0.1, not its binary approximation

    def day(self, value: Any, path: str) -> date | None:
        if isinstance(value, date) and not isinstance(value, datetime):
            return value
        if isinstance(value, str) and _DAY_RE.match(value):
            try:
                return date.fromisoformat(value)
            except ValueError:
                pass
        self.problem(path, f"must be a date (YYYY-MM-DD), got {_describe(value)}")
        return None

    def boolean(self, value: Any, path: str, default: bool) -> bool:
        if value is None:
            return default
        if not isinstance(value, bool):
            self.problem(path, f"must be true or false, got {_describe(value)}")
            return default
        return value

    def rates(self, fields: Mapping[str, Any], path: str, *,
              fill: Mapping[str, Decimal] | None = None) -> Rates | None:
        """The five rates; with ``fill``, a missing cache rate is that multiple of ``input``."""
        values: dict[str, Decimal | None] = {}
        for kind in TOKEN_KINDS:
            if fill is not None and kind in fill and kind not in fields:
                values[kind] = None
                continue
            values[kind] = self.number(fields.get(kind), f"{path}.{kind}")
        if fill is not None and values["input"] is not None:
            for kind, multiplier in fill.items():
                if kind not in fields:
                    values[kind] = values["input"] * multiplier
        if any(v is None for v in values.values()):
            return None
        return Rates(**values)  # type: ignore[arg-type]

    def ids(self, value: Any, path: str) -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            self.problem(path, f"must be a list, got {_describe(value)}")
            return ()
        result = []
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item:
                self.problem(f"{path}[{i}]", f"must be a non-empty string, got {_describe(item)}")
            else:
                result.append(item)
        return tuple(result)

    # The data file

    def table(self, data: Any) -> PriceTable | None:
        top = self.mapping(data, "", ("version", "checked", "service_tiers", "inference_geos",
                                      "web_search_per_1000", "cache_multipliers", "models"), required=True)
        if not isinstance(data, dict):
            return None
        version = top.get("version")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            self.problem("version", f"must be a positive integer, got {_describe(version)}")
        checked = self.day(top.get("checked"), "checked")
        tiers = self.tiers(top.get("service_tiers"))
        geos = self.geos(top.get("inference_geos"))
        web = self.number(top.get("web_search_per_1000"), "web_search_per_1000")
        fields = self.mapping(top.get("cache_multipliers"), "cache_multipliers", CACHE_KINDS, required=True)
        multipliers = {kind: self.number(fields.get(kind), f"cache_multipliers.{kind}") for kind in CACHE_KINDS}
        models = self.models(top.get("models"))
        if self.problems:
            return None
        assert isinstance(version, int) and checked is not None and web is not None
        return PriceTable(version=version, checked=checked, models=models, service_tiers=tiers,
                          inference_geos=geos, web_search_per_1000=web,
                          cache_multipliers={k: v for k, v in multipliers.items() if v is not None})

    def tiers(self, value: Any) -> dict[str, Tier]:
        tiers = {}
        fields = self.mapping(value, "service_tiers", tuple(value) if isinstance(value, dict) else (), required=True)
        for name, raw in fields.items():
            path = f"service_tiers.{name}"
            entry = self.mapping(raw, path, ("multiplier", "fast_mode"), required=True)
            multiplier = self.number(entry.get("multiplier"), f"{path}.multiplier")
            fast_mode = self.boolean(entry.get("fast_mode"), f"{path}.fast_mode", True)
            if multiplier is not None:
                tiers[str(name)] = Tier(multiplier, fast_mode)
        if isinstance(value, dict) and "standard" not in value:
            self.problem("service_tiers", "must price the standard tier")
        return tiers

    def geos(self, value: Any) -> dict[str, Decimal]:
        fields = self.mapping(value, "inference_geos", tuple(value) if isinstance(value, dict) else (), required=True)
        geos = {str(name): self.number(raw, f"inference_geos.{name}") for name, raw in fields.items()}
        return {name: m for name, m in geos.items() if m is not None}

    def models(self, value: Any) -> list[ModelPrices]:
        if not isinstance(value, dict) or not value:
            self.problem("models", f"must be a non-empty mapping, got {_describe(value)}")
            return []
        models = []
        owner: dict[str, str] = {}  # every id and alias -> the model that claims it
        for key, raw in value.items():
            path = f"models.{key}"
            if not isinstance(key, str) or not key:
                self.problem(path, "a model id must be a non-empty string")
                continue
            model = self.model(key, raw, path)
            if model is None:
                continue
            for i, model_id in enumerate(model.ids):
                where = path if i == 0 else f"{path}.aliases[{i - 1}]"
                if model_id in owner:
                    self.problem(where, f"{model_id!r} already names {owner[model_id]}")
                owner.setdefault(model_id, key)
            models.append(model)
        return models

    def model(self, key: str, value: Any, path: str) -> ModelPrices | None:
        fields = self.mapping(value, path, ("name", "aliases", "data_residency", "rates", "prompt_bands", "fast"),
                              required=True)
        if not isinstance(value, dict):
            return None
        name = fields.get("name")
        if not isinstance(name, str) or not name:
            self.problem(f"{path}.name", f"must be a non-empty string, got {_describe(name)}")
        aliases = self.ids(fields.get("aliases"), f"{path}.aliases")
        residency = self.boolean(fields.get("data_residency"), f"{path}.data_residency", False)
        rates = self.rate_history(fields.get("rates"), f"{path}.rates")
        bands = self.periods(fields.get("prompt_bands"), f"{path}.prompt_bands", banded=True)
        fast = self.periods(fields.get("fast"), f"{path}.fast", banded=False)
        if bands and fast:
            self.problem(path, "fast mode with prompt_bands is not supported: say which rates a fast long prompt pays")
        if not isinstance(name, str) or not name or rates is None or bands is None or fast is None:
            return None
        return ModelPrices(key, name, rates, aliases, residency,
                           tuple(b for b in bands if isinstance(b, Band)),
                           tuple(f for f in fast if isinstance(f, FastMode)))

    def rate_history(self, value: Any, path: str) -> tuple[tuple[date | None, Rates], ...] | None:
        if not isinstance(value, list) or not value:
            self.problem(path, f"must be a non-empty list, got {_describe(value)}")
            return None
        history: list[tuple[date | None, Rates]] = []
        ok = True
        for i, raw in enumerate(value):
            entry_path = f"{path}[{i}]"
            fields = self.mapping(raw, entry_path, ("effective_from", *TOKEN_KINDS), required=True)
            effective_from = None
            if i == 0:
                if "effective_from" in fields:
                    self.problem(f"{entry_path}.effective_from",
                                 "must be left out: the first rates apply to all earlier usage")
                    ok = False
            else:
                effective_from = self.day(fields.get("effective_from"), f"{entry_path}.effective_from")
                previous = history[-1][0] if history else None
                if effective_from is not None and previous is not None and effective_from <= previous:
                    self.problem(f"{entry_path}.effective_from",
                                 f"must be later than the previous rates' ({previous.isoformat()})")
                    ok = False
            rates = self.rates(fields, entry_path)
            if rates is None or (i > 0 and effective_from is None):
                ok = False
                continue
            history.append((effective_from, rates))
        return tuple(history) if ok else None

    def periods(self, value: Any, path: str, *, banded: bool) -> list[Band | FastMode] | None:
        """Prompt-length bands or fast-mode rates, each between optional dates, none overlapping."""
        if value is None:
            return []
        if not isinstance(value, list):
            self.problem(path, f"must be a list, got {_describe(value)}")
            return None
        result: list[Band | FastMode] = []
        ok = True
        extra = ("above", "effective_from", "until") if banded else ("effective_from", "until")
        for i, raw in enumerate(value):
            entry_path = f"{path}[{i}]"
            fields = self.mapping(raw, entry_path, (*extra, *TOKEN_KINDS), required=True)
            above = fields.get("above")
            if banded and (isinstance(above, bool) or not isinstance(above, int) or above < 1):
                self.problem(f"{entry_path}.above", f"must be a positive number of tokens, got {_describe(above)}")
                ok = False
            start = self.day(fields["effective_from"], f"{entry_path}.effective_from") \
                if "effective_from" in fields else None
            end = self.day(fields["until"], f"{entry_path}.until") if "until" in fields else None
            if start is not None and end is not None and end <= start:
                self.problem(f"{entry_path}.until", f"must be after effective_from ({start.isoformat()})")
                ok = False
            rates = self.rates(fields, entry_path)
            if rates is None or ("effective_from" in fields and start is None) or ("until" in fields and end is None):
                ok = False
                continue
            period: Band | FastMode = Band(above, rates, start, end) if isinstance(above, int) \
                else FastMode(rates, start, end)
            for j, other in enumerate(result):
                same_band = not isinstance(other, Band) or not isinstance(period, Band) or other.above == period.above
                if same_band and _overlap(other.effective_from, other.until, start, end):
                    self.problem(entry_path, f"overlaps {path.rsplit('.', 1)[-1]}[{j}]")
                    ok = False
            result.append(period)
        return result if ok else None

    # The configuration's overrides

    def overrides(self, data: Any, path: str, base: PriceTable) -> PriceTable:
        fields = self.mapping(data, path, ("discount", "models"))
        discount = Decimal(0)
        if "discount" in fields:
            raw = fields["discount"]
            if (isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw)
                    or not 0 <= raw < 1):
                self.problem(f"{path}.discount", f"must be a number from 0 up to (not including) 1,"
                                                 f" got {_describe(raw)}")
            else:
                discount = Decimal(str(raw))
        models: list[ModelPrices] = []
        raw_models = fields.get("models")
        if raw_models is not None and not isinstance(raw_models, dict):
            self.problem(f"{path}.models", f"must be a mapping, got {_describe(raw_models)}")
        elif raw_models:
            owner: dict[str, str] = {}  # every id an override claims -> its key
            for key, raw in raw_models.items():
                model_path = f"{path}.models.{key}"
                if not isinstance(key, str) or not key:
                    self.problem(model_path, "a model id must be a non-empty string")
                    continue
                model = self.override(key, raw, model_path, base)
                if model is None:
                    continue
                if model.id in owner:
                    self.problem(model_path, f"names the same model as {owner[model.id]} ({model.id})")
                    continue
                clash = False
                for i, alias in enumerate(model.aliases):
                    other = base.model(alias)
                    claimed = owner.get(alias)
                    if (other is not None and other.id != model.id) or (claimed is not None and claimed != key):
                        self.problem(f"{model_path}.aliases[{i}]",
                                     f"{alias!r} already names {other.id if other is not None else claimed}")
                        clash = True
                if not clash:
                    owner.update(dict.fromkeys(model.ids, key))
                    models.append(model)
        return base.with_overrides(models, discount)

    def override(self, key: str, value: Any, path: str, base: PriceTable) -> ModelPrices | None:
        fields = self.mapping(value, path, (*TOKEN_KINDS, "aliases", "data_residency", "fast"), required=True)
        if not isinstance(value, dict):
            return None
        known = base.model(key)
        rates = self.rates(fields, path, fill=base.cache_multipliers)
        new_aliases = self.ids(fields.get("aliases"), f"{path}.aliases")
        residency = self.boolean(fields.get("data_residency"), f"{path}.data_residency",
                                 True if known is None else known.data_residency)
        fast = None
        if "fast" in fields:
            fast = self.rates(self.mapping(fields["fast"], f"{path}.fast", TOKEN_KINDS, required=True),
                              f"{path}.fast", fill=base.cache_multipliers)
            if fast is None:
                return None
        if rates is None:
            return None
        if known is None:
            aliases = tuple(dict.fromkeys(a for a in new_aliases if a != key))
            return ModelPrices(key, key, ((None, rates),), aliases, residency,
                               fast=(FastMode(fast),) if fast else (), source="config")
        aliases = tuple(dict.fromkeys(a for a in (*known.aliases, key, *new_aliases) if a != known.id))
        return ModelPrices(known.id, known.name, ((None, rates),), aliases, residency,
                           fast=(FastMode(fast),) if fast else (), source="config")


def _overlap(a_from: date | None, a_until: date | None, b_from: date | None, b_until: date | None) -> bool:
    return (a_from is None or b_until is None or a_from < b_until) and (
        b_from is None or a_until is None or b_from < a_until)


def _describe(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, datetime):
        return "a timestamp"
    if isinstance(value, date):
        return "a date"
    if isinstance(value, (str, int, float)):
        return repr(value)
    return type(value).__name__
