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

PROG = "anthropic-usage-exporter requests"
DEFAULT_LOG = "./anthropic-requests.sqlite3"
ENV_LOG = "ANTHROPIC_REQUEST_LOG"

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_SINCE = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")

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
}


class UsageError(Exception):
    """A problem with the command line: one line on stderr, exit code 2."""


def parse_since(text: str) -> float:
    """Seconds in a duration like ``90s``, ``15m``, ``1h``, ``2d``, ``1w``."""
    match = _SINCE.fullmatch(text.strip())
    if match is None:
        raise UsageError(f"invalid --since {text!r}: use a number and a unit s, m, h, d or w (e.g. 1h)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Show the per-request log written by the client middleware, newest first.",
    )
    parser.add_argument(
        "--log",
        help=f"the SQLite request log (default: ${ENV_LOG}, else {DEFAULT_LOG})",
    )
    parser.add_argument("--since", help="only requests started within this long, e.g. 1h, 30m")
    parser.add_argument("--model", help="only requests for this model")
    parser.add_argument("--status", help="only this status code (e.g. 429, none) or class (e.g. 5xx)")
    parser.add_argument("--format", choices=("table", "csv", "jsonl"), default="table", help="output format")
    parser.add_argument("--limit", type=int, default=100, help="at most this many rows (0: all; default 100)")
    return parser


def _query(args: argparse.Namespace, now: float) -> tuple[str, list[Any]]:
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
    sql = f"SELECT {', '.join(COLUMN_NAMES)} FROM {TABLE}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY start_time DESC, id DESC"
    if args.limit > 0:
        sql += f" LIMIT {int(args.limit)}"
    return sql, params


def _cell(name: str, value: Any) -> str:
    if value is None:
        return ""
    if name == "stream":
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def _write_table(rows: Sequence[Sequence[Any]], out: IO[str]) -> None:
    headings = [_HEADINGS.get(name, name) for name in COLUMN_NAMES]
    cells = [[_cell(name, v) for name, v in zip(COLUMN_NAMES, row, strict=True)] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headings)]
    numeric = {i for i, name in enumerate(COLUMN_NAMES) if name.endswith(("_ms", "tokens", "requests", "count"))}

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if i in numeric else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ).rstrip()

    out.write(line(headings) + "\n")
    for row in cells:
        out.write(line(row) + "\n")


def _write_csv(rows: Sequence[Sequence[Any]], out: IO[str]) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMN_NAMES)
    for row in rows:
        writer.writerow(
            [
                _cell(name, v) if name == "stream" else ("" if v is None else v)
                for name, v in zip(COLUMN_NAMES, row, strict=True)
            ]
        )


def _write_jsonl(rows: Sequence[Sequence[Any]], out: IO[str]) -> None:
    for row in rows:
        record = dict(zip(COLUMN_NAMES, row, strict=True))
        record["stream"] = bool(record["stream"])
        out.write(json.dumps(record) + "\n")


def main(argv: list[str] | None = None, *, out: IO[str] | None = None, now: float | None = None) -> int:
    """Run the ``requests`` subcommand; returns the exit code."""
    out = sys.stdout if out is None else out
    args = _parser().parse_args(argv)
    path = args.log or os.environ.get(ENV_LOG) or DEFAULT_LOG
    try:
        sql, params = _query(args, time.time() if now is None else now)
        if not os.path.isfile(path):
            raise UsageError(f"request log not found: {path} (set --log or ${ENV_LOG})")
        try:
            conn = sqlite3.connect(Path(path).absolute().as_uri() + "?mode=ro", uri=True)
            try:
                rows = conn.execute(sql, params).fetchall()
            finally:
                conn.close()
        except sqlite3.Error as exc:
            raise UsageError(f"cannot read request log {path}: {exc}") from exc
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    try:
        {"table": _write_table, "csv": _write_csv, "jsonl": _write_jsonl}[args.format](rows, out)
        out.flush()
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, and keep Python from complaining at exit.
        if out is sys.stdout:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
