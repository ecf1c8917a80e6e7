"""``anthropic-usage-exporter requests``: read the per-request log, newest first."""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sqlite3
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from exporter.client.request_log import COLUMN_NAMES, TABLE, format_time
from exporter.output import write_output
from exporter.timeutil import parse_duration

PROG = "anthropic-usage-exporter requests"
DEFAULT_LOG = "./anthropic-requests.sqlite3"
ENV_LOG = "ANTHROPIC_REQUEST_LOG"

COST = "estimated_cost_usd"
TOKEN_COLUMNS = (
    "uncached_input_tokens",
    "cache_read_input_tokens",
    "cache_creation_5m_input_tokens",
    "cache_creation_1h_input_tokens",
    "output_tokens",
    "web_search_requests",
)
# --group-by: the group's key as SQL, its column name, and its order (cost first for models).
_GROUPS = {
    "model": ("model", "model", f"SUM({COST}) IS NULL, SUM({COST}) DESC, requests DESC, model"),
    "hour": ("substr(start_time, 1, 13) || ':00Z'", "hour", "hour DESC"),
}
GROUP_COLUMNS = ("requests", "errors", *TOKEN_COLUMNS, COST, "requests_without_cost")

# Table headings, narrower than the column names.
_HEADINGS = {
    "start_time": "time",
    "operation": "op",
    "status_code": "status",
    "error_type": "error",
    "duration_ms": "dur_ms",
    "uncached_input_tokens": "in",
    "cache_read_input_tokens": "cache_rd",
    "cache_creation_5m_input_tokens": "cache_5m",
    "cache_creation_1h_input_tokens": "cache_1h",
    "output_tokens": "out",
    "web_search_requests": "web",
    "service_tier": "tier",
    "retry_count": "retry",
    "workspace_id": "workspace",
    COST: "cost_usd",
    "requests_without_cost": "no_cost",
}
_NUMERIC = frozenset((*TOKEN_COLUMNS, COST, "duration_ms", "ttft_ms", "retry_count", *GROUP_COLUMNS))


class UsageError(Exception):
    """A problem with the command line: one line on stderr, exit code 2."""


def parse_since(text: str) -> float:
    """Seconds in ``--since``: a Prometheus-style duration (``90s``, ``15m``, ``1h30m``, ``2d``)."""
    try:
        return parse_duration(text)
    except ValueError:
        raise UsageError(
            f"invalid --since {text!r}: use a duration such as 30m, 1h, 1h30m or 7d (units ms, s, m, h, d, w)"
        ) from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Show the per-request log written by the client middleware, newest first.",
    )
    parser.add_argument(
        "--log",
        help=f"the SQLite request log (default: ${ENV_LOG}, else {DEFAULT_LOG})",
    )
    parser.add_argument("--since", help="only requests started within this long, e.g. 1h, 30m, 1h30m")
    parser.add_argument("--model", help="only requests for this model")
    parser.add_argument("--status", help="only this status code (e.g. 429, none) or class (e.g. 5xx)")
    parser.add_argument(
        "--group-by",
        choices=tuple(_GROUPS),
        help="one line per model or per UTC hour: requests, errors, tokens and estimated cost summed "
        "over every matching request (--limit does not apply)",
    )
    parser.add_argument("--format", choices=("table", "csv", "jsonl"), default="table", help="output format")
    parser.add_argument("--limit", type=int, default=100, help="at most this many rows (0: all; default 100)")
    return parser


def _where(args: argparse.Namespace, now: float) -> tuple[str, list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if args.since is not None:
        where.append("start_time >= ?")
        params.append(format_time(now - parse_since(args.since)))
    if args.model is not None:
        where.append("model = ?")
        params.append(args.model)
    if args.status is not None:
        status = args.status.strip().lower()
        if re.fullmatch(r"[1-5]xx", status):
            where.append("status_code LIKE ?")
            params.append(status[0] + "__")
        else:
            where.append("status_code = ?")
            params.append(status)
    return (" WHERE " + " AND ".join(where)) if where else "", params


def _query(args: argparse.Namespace, now: float, present: set[str]) -> tuple[str, list[Any], tuple[str, ...]]:
    """The SELECT, its parameters and its column names. A column the file predates reads as NULL."""
    where, params = _where(args, now)
    if args.group_by is not None:
        key, name, order = _GROUPS[args.group_by]
        cost = COST if COST in present else "NULL"
        sums = ", ".join(f"SUM({column})" for column in TOKEN_COLUMNS)
        sql = (
            f"SELECT {key} AS {name}, COUNT(*) AS requests, COUNT(error_type) AS errors, {sums}, "
            f"SUM({cost}), SUM({cost} IS NULL) FROM {TABLE}{where} GROUP BY 1 ORDER BY {order}"
        )
        return sql, params, (name, *GROUP_COLUMNS)
    selected = ", ".join(name if name in present else f"NULL AS {name}" for name in COLUMN_NAMES)
    sql = f"SELECT {selected} FROM {TABLE}{where} ORDER BY start_time DESC, id DESC"
    if args.limit > 0:
        sql += f" LIMIT {int(args.limit)}"
    return sql, params, COLUMN_NAMES


def _cell(name: str, value: Any) -> str:
    if value is None:
        return ""
    if name == "stream":
        return "true" if value else "false"
    if name == COST:
        return f"{value:.6f}"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def _totals(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> tuple[list[str], str | None]:
    """The table's last line (the rows' sums) and, when some rows have no cost, a note about them."""
    grouped = "requests_without_cost" in columns
    count = sum(row[1] for row in rows) if grouped else len(rows)
    cells = [f"total, {count} request{'' if count == 1 else 's'}"]
    summed = {*TOKEN_COLUMNS, COST, *(GROUP_COLUMNS if grouped else ())}
    for i, name in enumerate(columns[1:], 1):
        if name in summed:
            values = [row[i] for row in rows if row[i] is not None]
            cells.append(_cell(name, sum(values)) if values or name != COST else "")
        else:
            cells.append("")
    cost = columns.index(COST)
    missing = sum(row[-1] for row in rows) if grouped else sum(row[cost] is None for row in rows)
    note = None
    if missing:
        note = (
            f"requests without an estimated cost: {missing} of {count} (a model or tier the price "
            "table does not price, a reply whose usage was not read, or logged before costs were)"
        )
    return cells, note


def _write_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], out: IO[str]) -> None:
    if COST in columns and "web_search_requests" in columns:  # the cost next to the tokens it prices
        order = [i for i, name in enumerate(columns) if name != COST]
        order.insert(order.index(columns.index("web_search_requests")) + 1, columns.index(COST))
        columns = [columns[i] for i in order]
        rows = [[row[i] for i in order] for row in rows]
    headings = [_HEADINGS.get(name, name) for name in columns]
    cells = [[_cell(name, v) for name, v in zip(columns, row, strict=True)] for row in rows]
    total, note = _totals(columns, rows)
    widths = [max([len(h)] + [len(r[i]) for r in (*cells, total)]) for i, h in enumerate(headings)]
    numeric = {i for i, name in enumerate(columns) if name in _NUMERIC}

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if i in numeric else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ).rstrip()

    out.write(line(headings) + "\n")
    for row in cells:
        out.write(line(row) + "\n")
    out.write(line(total) + "\n")
    if note is not None:
        out.write(note + "\n")


def _write_csv(columns: Sequence[str], rows: Sequence[Sequence[Any]], out: IO[str]) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(
            [
                _cell(name, v) if name == "stream" else ("" if v is None else v)
                for name, v in zip(columns, row, strict=True)
            ]
        )


def _write_jsonl(columns: Sequence[str], rows: Sequence[Sequence[Any]], out: IO[str]) -> None:
    for row in rows:
        record = dict(zip(columns, row, strict=True))
        if "stream" in record:
            record["stream"] = bool(record["stream"])
        out.write(json.dumps(record) + "\n")


def main(argv: list[str] | None = None, *, out: IO[str] | None = None, now: float | None = None) -> int:
    """Run the ``requests`` subcommand; returns the exit code."""
    out = sys.stdout if out is None else out
    args = _parser().parse_args(argv)
    path = args.log or os.environ.get(ENV_LOG) or DEFAULT_LOG
    try:
        if args.since is not None:  # a bad value is reported before a missing file
            parse_since(args.since)
        if not os.path.isfile(path):
            raise UsageError(f"request log not found: {path} (set --log or ${ENV_LOG})")
        try:
            conn = sqlite3.connect(Path(path).absolute().as_uri() + "?mode=ro", uri=True)
            try:
                present = {row[1] for row in conn.execute(f"PRAGMA table_info({TABLE})")}
                if not present:
                    raise sqlite3.OperationalError(f"no such table: {TABLE}")
                sql, params, columns = _query(args, time.time() if now is None else now, present)
                rows = conn.execute(sql, params).fetchall()
            finally:
                conn.close()
        except sqlite3.Error as exc:
            raise UsageError(f"cannot read request log {path}: {exc}") from exc
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    writer = {"table": _write_table, "csv": _write_csv, "jsonl": _write_jsonl}[args.format]
    write_output(out, lambda stream: writer(columns, rows, stream))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
