"""``anthropic-usage-exporter prices``: the price table in force, as an aligned table."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import IO, Any

from exporter.output import write_output
from exporter.pricing.parse import default_table, parse_pricing
from exporter.pricing.table import ONE, PriceTable, Rates

PROG = "anthropic-usage-exporter prices"
_HEADINGS = ("MODEL", "RATES", "INPUT", "5M WRITE", "1H WRITE", "CACHE READ", "OUTPUT", "DATA RESIDENCY",
             "ALSO MATCHES")
_NUMERIC = range(2, 7)
_CENT = Decimal("0.01")


class UsageError(Exception):
    """A problem with the command line or the configuration: exit code 2."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def _day(text: str) -> date:
    try:
        if len(text) == 10:
            return date.fromisoformat(text)
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Show the price table the exporter and the client middleware use: its version, the day it was"
                    " checked, the negotiated discount, and every model's rates in USD per million tokens.",
    )
    parser.add_argument("--at", type=_day, metavar="YYYY-MM-DD",
                        help="show the rates in force on this UTC day (default: today)")
    parser.add_argument("--config.file", dest="config_file", metavar="PATH",
                        help="include the overrides and discount of this configuration's pricing section")
    return parser


def _read_pricing(path: str) -> Any:
    """The ``pricing`` section of a configuration file (the rest is the exporter's to check)."""
    from exporter.config import ConfigError, read_yaml  # not at import: the configuration imports pricing
    try:
        data = read_yaml(path)
    except ConfigError as exc:
        raise UsageError(exc.problems) from None
    if data is None:
        return None
    if not isinstance(data, dict):
        raise UsageError([f"{path}: the configuration must be a mapping"])
    return data.get("pricing")


def money(value: Decimal) -> str:
    """At least two decimals, more only when the rate has them (0.125, 0.0088)."""
    if value == value.quantize(_CENT):
        return f"{value:.2f}"
    return format(value.normalize(), "f")


def _plain(value: Decimal) -> str:
    return format(value.normalize(), "f")


def _tokens(count: int) -> str:
    return f"{count // 1000}k" if count % 1000 == 0 else f"{count:,}"


def render(table: PriceTable, day: date) -> str:
    """The table in force on ``day``: a header of modifiers, then one line per model and rate band."""
    at = datetime(day.year, day.month, day.day, tzinfo=UTC)
    factor = ONE - table.discount
    discount = (f"{_plain(table.discount * 100)}% off every figure below (from the configuration)"
                if table.discount else "none")
    tiers = ", ".join(f"{name} x{_plain(tier.multiplier)}{'' if tier.fast_mode else ' (no fast mode)'}"
                      for name, tier in table.service_tiers.items())
    geos = ", ".join(f"{name} x{_plain(m)}" for name, m in table.inference_geos.items())
    residency = ", ".join(f"{name} x{_plain(m)}" for name, m in table.inference_geos.items() if m != ONE)
    lines = [
        f"Price table version {table.version}, checked {table.checked.isoformat()}.",
        f"Rates in force on {day.isoformat()} (UTC), USD per million tokens.",
        f"Negotiated discount: {discount}.",
        f"Web search: {money(table.web_search_per_1000 * factor)} USD per 1,000 searches.",
        f"Service tiers: {tiers}; any other tier (flex, flex_discount) is unpriced.",
        f"Inference geos: {geos}, on models with data residency; any other geo is unpriced.",
        "Ids ending in -YYYYMMDD also match without the date.",
        "",
    ]
    rows: list[tuple[str, ...]] = [_HEADINGS]

    def row(model: str, label: str, rates: Rates, geo: str = "", also: str = "") -> None:
        rows.append((model, label, *(money(r) for r in rates.scaled(factor).values()), geo, also))

    for model in table.models:
        in_force = table.in_force(model, at)
        name = model.id + (" (config)" if model.source == "config" else "")
        row(name, "standard", in_force.standard, residency if model.data_residency else "-", ", ".join(model.aliases))
        for above, rates in in_force.bands:
            row("", f"prompt > {_tokens(above)}", rates)
        if in_force.fast is not None:
            row("", "fast", in_force.fast)
    widths = [max(len(r[i]) for r in rows) for i in range(len(_HEADINGS))]
    for cells in rows:
        lines.append("  ".join(c.rjust(w) if i in _NUMERIC and cells is not rows[0] else c.ljust(w)
                               for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip())
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None, *, out: IO[str] | None = None, now: datetime | None = None,
         base: PriceTable | None = None) -> int:
    """Run the ``prices`` subcommand; returns the exit code (2: a bad configuration)."""
    out = sys.stdout if out is None else out
    args = _parser().parse_args(argv)
    table = default_table() if base is None else base
    try:
        if args.config_file is not None:
            table, problems = parse_pricing(_read_pricing(args.config_file), base=table)
            if problems:
                raise UsageError(problems)
    except UsageError as exc:
        count = len(exc.problems)
        print(f"{PROG}: error: invalid configuration ({count} problem{'s' if count != 1 else ''}):", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    day = args.at or (datetime.now(UTC) if now is None else now.astimezone(UTC)).date()
    write_output(out, lambda stream: stream.write(render(table, day)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
