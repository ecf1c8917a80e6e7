"""Admin API traffic and exporter CPU per poll: the bucket store vs re-reading every window.

Run by hand (not a test), from the repository root:

    git worktree add --detach /tmp/old 090315d     # the exporter before the bucket store
    python bench/bench_poll.py --tree old=/tmp/old --tree new=. [--polls 30]

Each ``--tree LABEL=PATH`` is a checkout whose ``exporter`` package is measured, one column
each (default: only this tree's).

A scripted Admin API runs in its own process on 127.0.0.1: ``GET
/v1/organizations/usage_report/messages`` and ``GET /v1/organizations/cost_report`` with the
documented shapes (``data[]`` of buckets with ``starting_at``, ``ending_at`` and ``results[]``;
``has_more``/``next_page`` paging; ``limit`` at most 1440/168/31 for 1m/1h/1d). It honours
``starting_at``, ``ending_at``, ``bucket_width``, ``group_by[]``, ``limit`` and ``page``; buckets
that have not begun by its clock are not sent, and the bucket in progress holds only its
elapsed part. Rows are deterministic per bucket.

The data is laid out as the scrape benchmark's: 1,388 label sets of the default five
``group_by`` labels (~50,000 usage samples over the six default windows), here with real model
ids, so an exporter that prices usage rows finds them in its price table. Each label set has a
heavy-tailed weight (a few busy, many rare); its chance to be active in a bucket grows with the
bucket's width, so that on average 3 % of the label sets (42 rows) are active in a minute, 20 %
(278) in an hour and 60 % (833) in a day (--minute-share, --hour-share, --day-share). Each width
is drawn on its own (an hour is not the sum of its minutes, though its tokens are of the same
order), which is fine for counting traffic and work. The cost report has one row per
(workspace, model, tier, context window, token type) active that day, plus web search per
workspace: 640 rows a day.

Each exporter runs in a subprocess of its own, one tree after the other (never at once), with
the default configuration and an injected clock that advances a minute per usage poll (a cost
poll every 5th minute, as the default intervals do), so ``--polls 30`` takes seconds, not 30
minutes. Per poll it records the Admin API requests, response bytes (uncompressed JSON, and
what gzip would make of them) and rows, and the exporter's CPU time (``time.process_time``
around ``Poller.poll``). An exporter with a bucket store also re-sums its windows at every
minute boundary without calling the API (``Poller.resum``, as ``Poller.run`` does); that is
measured too, and after the steady polls its clock jumps 6 hours ahead, to its full re-read.
RSS is the exporter process's, read from /proc; ``--trace-memory`` adds the live and peak
Python heap over the first poll (tracemalloc, which slows that poll down).
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import math
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

REPO = Path(__file__).resolve().parent.parent
ORG = "bench"
USAGE_PATH = "/v1/organizations/usage_report/messages"
COST_PATH = "/v1/organizations/cost_report"
CLOCK_PATH = "/_bench/now"  # the driver sets the scripted API's clock; not counted as API traffic

# --- The scripted Admin API -------------------------------------------------------------------

WIDTH_SECONDS = {"1m": 60, "1h": 3600, "1d": 86400}
USAGE_LIMITS = {"1m": (60, 1440), "1h": (24, 168), "1d": (7, 31)}  # (default, maximum)
COST_LIMITS = {"1d": (7, 31)}
USAGE_DIMENSIONS = ("api_key_id", "workspace_id", "model", "service_tier", "context_window", "inference_geo",
                    "account_id", "service_account_id")
TOKEN_TYPES = ("uncached_input_tokens", "cache_creation.ephemeral_5m_input_tokens",
               "cache_creation.ephemeral_1h_input_tokens", "cache_read_input_tokens", "output_tokens")
TOKEN_LABELS = ("Input Tokens", "Cache Write (5m)", "Cache Write (1h)", "Cache Read", "Output Tokens")
# Micro-cents per token, per token type (input 3, writes 3.75/6, reads 0.3, output 15 USD per MTok).
PRICE = (300, 375, 600, 30, 1500)


MODELS = ("claude-fable-5", "claude-opus-5", "claude-opus-4-8", "claude-opus-4-7", "claude-opus-4-6",
          "claude-opus-4-5", "claude-sonnet-5", "claude-sonnet-4-6", "claude-sonnet-4-5", "claude-haiku-5-5",
          "claude-haiku-4-5", "claude-3-5-haiku")


def label_sets(count: int) -> list[dict[str, str]]:
    """The scrape benchmark's label sets: 40 workspaces, 350 keys, 12 models, 3 tiers, 2 windows."""
    return [{
        "workspace_id": f"wrkspc_{i % 40:024d}",
        "api_key_id": f"apikey_{i % 350:024d}",
        "model": MODELS[i % 12],
        "service_tier": ("standard", "batch", "priority")[i % 3],
        "context_window": ("0-200k", "200k-1M")[i % 2],
        "inference_geo": "global",
    } for i in range(count)]


class Organization:
    """Deterministic usage: label set i is active in a bucket when its draw falls under
    1 - exp(-weight_i * rate[width] * elapsed part of the bucket)."""

    def __init__(self, count: int, shares: dict[str, float]):
        self.sets = label_sets(count)
        order = list(range(count))
        random.Random(1388).shuffle(order)  # busy label sets spread over workspaces and keys
        self.weights = [0.0] * count
        for rank, i in enumerate(order):
            self.weights[i] = 1 / (1 + rank / 20) ** 1.5
        self.rates = {width: self._rate(share) for width, share in shares.items()}
        # Tokens per active row scale so that an hour's (a day's) rows hold about as many tokens
        # as its minutes' rows would: fewer rows than 60 minutes' worth, each larger.
        self.scale = {width: WIDTH_SECONDS[width] / 60 * shares["1m"] / share for width, share in shares.items()}

    def _rate(self, share: float) -> float:
        """The rate at which the mean chance over label sets is ``share`` (bisection)."""
        low, high = 0.0, 1e6
        for _ in range(200):
            mid = (low + high) / 2
            mean = sum(1 - math.exp(-w * mid) for w in self.weights) / len(self.weights)
            low, high = (mid, high) if mean < share else (low, mid)
        return (low + high) / 2

    def active(self, width: str, start: datetime, now: datetime) -> list[tuple[int, int, float]]:
        """(label set, value seed, elapsed part) of the label sets active in the bucket."""
        seconds = WIDTH_SECONDS[width]
        part = min(1.0, (now - start).total_seconds() / seconds)
        if part <= 0:
            return []
        rng = random.Random(int(start.timestamp()) // seconds * 8 + list(WIDTH_SECONDS).index(width))
        draws = [rng.random() for _ in self.weights]
        seeds = [rng.getrandbits(32) for _ in self.weights]
        rate = self.rates[width] * part
        return [(i, seeds[i], part) for i, w in enumerate(self.weights) if draws[i] < 1 - math.exp(-w * rate)]

    def usage_rows(self, width: str, start: datetime, now: datetime, group_by: list[str]) -> list[dict]:
        sums: dict[tuple, list[int]] = {}
        scale = self.scale[width]
        for i, seed, part in self.active(width, start, now):
            key = tuple(self.sets[i].get(d) if d in group_by else None for d in USAGE_DIMENSIONS)
            k = scale * part
            values = [int((seed % 40_000 + 10) * k), int((seed >> 4) % 90_000 * k), int((seed >> 8) % 6_000 * k),
                      int((seed >> 12) % 2_000 * k), int((seed >> 16) % 8_000 * k + 1), (seed >> 28) % 2]
            total = sums.get(key)
            if total is None:
                sums[key] = values
            else:
                for n, v in enumerate(values):
                    total[n] += v
        rows = []
        for key, (uncached, read, write5m, write1h, output, searches) in sums.items():
            row = {
                "uncached_input_tokens": uncached,
                "cache_creation": {"ephemeral_1h_input_tokens": write1h, "ephemeral_5m_input_tokens": write5m},
                "cache_read_input_tokens": read,
                "output_tokens": output,
                "server_tool_use": {"web_search_requests": searches},
            }
            row.update(zip(USAGE_DIMENSIONS, key, strict=True))
            rows.append(row)
        return rows

    def cost_rows(self, start: datetime, now: datetime, group_by: list[str]) -> list[dict]:
        """Cost of the day's active label sets, in cents, by workspace and description."""
        micro: dict[tuple, int] = {}
        by_workspace, by_description = "workspace_id" in group_by, "description" in group_by
        for i, seed, part in self.active("1d", start, now):
            labels = self.sets[i]
            workspace = labels["workspace_id"] if by_workspace else None
            k = self.scale["1d"] * part
            tokens = (int((seed % 40_000 + 10) * k), int((seed >> 8) % 6_000 * k), int((seed >> 12) % 2_000 * k),
                      int((seed >> 4) % 90_000 * k), int((seed >> 16) % 8_000 * k + 1))
            for t, count in enumerate(tokens):
                if not count:
                    continue
                if by_description:
                    text = f"{labels['model']} Usage - {TOKEN_LABELS[t]}"
                    text += ", Batch" if labels["service_tier"] == "batch" else ""
                    text += ", Long Context" if labels["context_window"] == "200k-1M" else ""
                    fields = (text, "tokens", labels["model"], TOKEN_TYPES[t], labels["service_tier"],
                              labels["context_window"], "global")
                else:
                    fields = (None,) * 7
                micro[(workspace, *fields)] = micro.get((workspace, *fields), 0) + count * PRICE[t]
            if (seed >> 28) % 2:
                fields = ("Web Search Usage", "web_search", None, None, None, None, None) if by_description \
                    else (None,) * 7
                micro[(workspace, *fields)] = micro.get((workspace, *fields), 0) + 1_000_000
        rows = []
        for (workspace, description, cost_type, model, token_type, tier, window, geo), amount in micro.items():
            cents = f"{amount // 1_000_000}.{amount % 1_000_000:06d}".rstrip("0").rstrip(".")
            rows.append({"amount": cents, "currency": "USD", "workspace_id": workspace, "description": description,
                         "cost_type": cost_type, "context_window": window, "model": model, "service_tier": tier,
                         "token_type": token_type, "inference_geo": geo})
        return rows


class BadRequest(Exception):
    pass


def parse_time(text: str | None, name: str) -> datetime:
    if not text:
        raise BadRequest(f"{name}: Field required")
    moment = datetime.fromisoformat(text.replace(" ", "+").replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise BadRequest(f"{name}: a time zone is required")
    return moment.astimezone(UTC)


def report_page(org: Organization, params: dict[str, list[str]], now: datetime, cost: bool) -> tuple[dict, int]:
    """One page of a report, and its number of rows."""
    one = {name: values[0] for name, values in params.items() if values}
    width = one.get("bucket_width", "1d")
    limits = COST_LIMITS if cost else USAGE_LIMITS
    if width not in limits:
        raise BadRequest(f"bucket_width: {width!r} is not allowed")
    default, maximum = limits[width]
    limit = int(one.get("limit", default))
    if not 1 <= limit <= maximum:
        raise BadRequest(f"limit: must be between 1 and {maximum} for bucket_width {width}")
    starting_at = parse_time(one.get("starting_at"), "starting_at")
    ending_at = parse_time(one["ending_at"], "ending_at") if "ending_at" in one else now
    if ending_at <= starting_at:
        raise BadRequest("ending_at must be after starting_at")
    step = timedelta(seconds=WIDTH_SECONDS[width])
    start = datetime.fromtimestamp(int(starting_at.timestamp()) // int(step.total_seconds())
                                   * int(step.total_seconds()), UTC)
    if "page" in one:
        try:
            cursor = parse_time(base64.b64decode(one["page"].removeprefix("page_")).decode(), "page")
        except (ValueError, UnicodeDecodeError):
            raise BadRequest("page: Invalid page token") from None
        if cursor < start:
            raise BadRequest("page: Invalid page token")
        start = cursor
    group_by = params.get("group_by[]", []) + params.get("group_by", [])
    data, rows = [], 0
    while len(data) < limit and start + step <= ending_at and start <= now:
        results = org.cost_rows(start, now, group_by) if cost else org.usage_rows(width, start, now, group_by)
        rows += len(results)
        data.append({"starting_at": f"{start:%Y-%m-%dT%H:%M:%SZ}", "ending_at": f"{start + step:%Y-%m-%dT%H:%M:%SZ}",
                     "results": results})
        start += step
    has_more = start + step <= ending_at and start <= now
    page = "page_" + base64.b64encode(f"{start:%Y-%m-%dT%H:%M:%SZ}".encode()).decode() if has_more else None
    return {"data": data, "has_more": has_more, "next_page": page}, rows


def serve_api(port: int, label_set_count: int, shares: dict[str, float]) -> None:
    org = Organization(label_set_count, shares)
    clock = {"now": datetime.now(UTC)}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            params = parse_qs(url.query)
            status, extra, rows = 200, {}, 0
            try:
                if url.path == CLOCK_PATH:
                    clock["now"] = parse_time(params["t"][0], "t")
                    body = {"now": params["t"][0]}
                elif url.path in (USAGE_PATH, COST_PATH):
                    if not self.headers.get("x-api-key") or not self.headers.get("anthropic-version"):
                        status, body = 401, {"type": "error", "error": {"type": "authentication_error"}}
                    else:
                        body, rows = report_page(org, params, clock["now"], cost=url.path == COST_PATH)
                else:
                    status, body = 404, {"type": "error", "error": {"type": "not_found_error"}}
            except (BadRequest, ValueError) as exc:
                status, body = 400, {"type": "error", "error": {"type": "invalid_request_error", "message": str(exc)}}
            payload = json.dumps(body, separators=(",", ":")).encode()
            if status == 200 and url.path != CLOCK_PATH:
                extra = {"x-bench-rows": str(rows), "x-bench-gzip-bytes": str(len(gzip.compress(payload, 6)))}
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            for name, value in extra.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


# --- One exporter, in a process of its own ------------------------------------------------------


def rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def run_exporter(api: str, start: datetime, polls: int, profile: bool, trace_memory: bool) -> dict:
    """Poll with the default configuration on a scripted clock; per poll, traffic and CPU."""
    import cProfile
    import pstats
    import tracemalloc

    import requests

    from exporter.admin_api import ENDPOINTS
    from exporter.config import Config, Organization, Secret
    from exporter.poller import Poller
    from exporter.state import ExporterState

    now = [start]
    mono0 = 1_000_000.0
    slept: list[float] = []

    def monotonic() -> float:  # follows the scripted clock, so pacing and deadlines see minutes pass
        return mono0 + (now[0] - start).total_seconds() + sum(slept)

    traffic = {"requests": 0, "bytes": 0, "gzip_bytes": 0, "rows": 0}

    def count(response: requests.Response, *args: object, **kwargs: object) -> None:
        traffic["requests"] += 1
        traffic["bytes"] += int(response.headers.get("content-length", 0))  # the body is the exporter's to read
        traffic["gzip_bytes"] += int(response.headers.get("x-bench-gzip-bytes", 0))
        traffic["rows"] += int(response.headers.get("x-bench-rows", 0))

    session = requests.Session()
    session.hooks["response"].append(count)
    control = requests.Session()
    config = Config(organizations=(Organization(ORG, Secret("sk-ant-admin01-bench"), api),))
    state = ExporterState([ORG], ENDPOINTS)
    poller = Poller(config.organizations[0], config, state, session=session, clock=lambda: now[0],
                    monotonic=monotonic, sleep=slept.append)
    profiler = cProfile.Profile() if profile else None
    records = []
    idle_rss = rss_mib()

    def set_clock(moment: datetime) -> None:
        now[0] = moment
        control.get(api + CLOCK_PATH, params={"t": f"{moment:%Y-%m-%dT%H:%M:%S.%fZ}"}, timeout=30).raise_for_status()

    def measure(phase: str, report: str, call) -> None:
        before = dict(traffic)
        wall, cpu = time.perf_counter(), time.process_time()
        if profiler is not None and phase == "steady":
            profiler.enable()
        ok = call()
        if profiler is not None:
            profiler.disable()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        if ok is False:
            raise SystemExit(f"{phase} {report} poll at {now[0]} failed: {state.counters()[1]}")
        records.append({"phase": phase, "report": report, "cpu": cpu, "wall": wall, "rss": rss_mib(),
                        "at": now[0].isoformat(), **{k: traffic[k] - before[k] for k in traffic}})

    resum = getattr(poller, "resum", None)
    heap = None
    if trace_memory:
        tracemalloc.start()
    for minute in range(polls):
        moment = start + timedelta(minutes=minute)
        phase = "first" if minute == 0 else "steady"
        if minute and resum is not None:
            set_clock(moment.replace(second=0, microsecond=0))
            measure("resum", "windows", resum)
        set_clock(moment)
        measure(phase, "usage", lambda: poller.poll("usage"))
        if minute % 5 == 0:
            measure(phase, "cost", lambda: poller.poll("cost"))
        if minute == 0 and trace_memory:
            heap = tracemalloc.get_traced_memory()
            tracemalloc.stop()
    snapshot = state.status(ORG, "usage").snapshot
    result = {
        "exporter": str(Path(sys.modules["exporter"].__file__).parent.parent),
        "idle_rss": idle_rss,
        "label_sets": len(snapshot.series),
        "samples": sum(len(per_window) for per_window in snapshot.series.values()) * 6,
        "output_tokens": {window: sum(per_window[window].output_tokens for per_window in snapshot.series.values())
                          for window in next(iter(snapshot.series.values()), {})},
        "sleeps": len(slept),
        "heap": heap,
    }
    history = getattr(poller, "history", None)
    if history is not None:
        result["held"] = {f"{report} {width}": {
            "buckets": len(store.buckets), "rows": sum(len(b.label_ids) for b in store.buckets),
            "MiB": round(sum(sys.getsizeof(b) + sys.getsizeof(b.label_ids) + sys.getsizeof(b.values)
                             + 2 * sys.getsizeof(b.start) for b in store.buckets) / 2**20, 1),
        } for report, h in history.items() for width, store in h.stores.items()}
    if history is not None:  # an exporter with a bucket store: its full re-read
        set_clock(start + timedelta(hours=6))
        measure("full", "usage", lambda: poller.poll("usage"))
        measure("full", "cost", lambda: poller.poll("cost"))
    if profiler is not None:
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(18)
    result["records"] = records
    return result


# --- The driver ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_up(url: str, timeout: float = 30) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            requests.get(url, params={"t": "2026-01-01T00:00:00Z"}, timeout=5)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise SystemExit(f"scripted API at {url} did not come up")


def exporter_run(tree: Path, api: str, args: argparse.Namespace) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    command = [sys.executable, __file__, "--exporter", "--api", api, "--start", args.start, "--polls", str(args.polls)]
    if args.profile:
        command.append("--profile")
    if args.trace_memory:
        command.append("--trace-memory")
    done = subprocess.run(command, env=env, cwd=tree, stdout=subprocess.PIPE, check=True, timeout=1800)
    result = json.loads(done.stdout)
    if Path(result["exporter"]).resolve() != tree.resolve():
        raise SystemExit(f"the subprocess imported the exporter from {result['exporter']}, not {tree}")
    return result


def summary(run: dict) -> dict[str, str]:
    records = run["records"]

    def pick(phase: str, report: str) -> list[dict]:
        return [r for r in records if r["phase"] == phase and r["report"] == report]

    def med(rows: list[dict], key: str) -> float:
        return statistics.median(r[key] for r in rows) if rows else float("nan")

    def traffic(rows: list[dict], total: bool = False) -> dict[str, str]:
        if not rows:
            return {k: "—" for k in ("requests", "bytes", "rows", "cpu")}
        agg = (lambda key: sum(r[key] for r in rows)) if total else (lambda key: med(rows, key))
        return {"requests": f"{agg('requests'):,.0f}",
                "bytes": f"{agg('bytes') / 1e3:,.0f} kB ({agg('gzip_bytes') / 1e3:,.0f} kB gzipped)",
                "rows": f"{agg('rows'):,.0f}",
                "cpu": f"{agg('cpu') * 1000:,.0f} ms"
                       + ("" if total else f" (max {max(r['cpu'] for r in rows) * 1000:,.0f})")}

    first = pick("first", "usage") + pick("first", "cost")
    full = pick("full", "usage") + pick("full", "cost")
    usage, cost, resum = pick("steady", "usage"), pick("steady", "cost"), pick("resum", "windows")
    minute_cpu = med(usage, "cpu") + (med(resum, "cpu") if resum else 0)
    out: dict[str, str] = {}
    for name, rows, total in (("steady usage poll", usage, False), ("steady cost poll", cost, False),
                              ("first poll, usage + cost", first, True),
                              ("full re-read (every 6 h), usage + cost", full, True)):
        for key, value in traffic(rows, total).items():
            out[f"{name}: {key}"] = value
    out["first poll, usage + cost: wall (with the scripted API's time)"] = \
        f"{sum(r['wall'] for r in first):.2f} s"
    out["re-sum at a minute boundary, no API call: cpu"] = (
        f"{med(resum, 'cpu') * 1000:,.0f} ms (max {max(r['cpu'] for r in resum) * 1000:,.0f})" if resum else "—")
    out["exporter CPU per minute (usage poll + re-sum)"] = f"{minute_cpu * 1000:,.0f} ms"
    out["RSS before the first poll"] = f"{run['idle_rss']:.0f} MiB"
    out["RSS after the first usage + cost poll"] = f"{first[-1]['rss']:.0f} MiB"
    out["RSS after the steady polls (highest)"] = f"{max(r['rss'] for r in usage + cost + resum):.0f} MiB"
    if full:
        out["RSS after the full re-read"] = f"{full[-1]['rss']:.0f} MiB"
    if run["heap"]:
        out["Python heap after the first poll: live / peak (tracemalloc, `--trace-memory`)"] = \
            f"{run['heap'][0] / 2**20:.0f} / {run['heap'][1] / 2**20:.0f} MiB"
    out["label sets / usage samples served"] = f"{run['label_sets']:,} / {run['samples']:,}"
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", action="append", default=[], metavar="LABEL=PATH",
                        help="a checkout whose exporter to measure, e.g. old=/tmp/old (repeatable)")
    parser.add_argument("--polls", type=int, default=30, help="usage polls, a minute apart (default 30)")
    parser.add_argument("--start", default="2026-11-18T14:40:30Z", help="the scripted clock's first reading")
    parser.add_argument("--label-sets", type=int, default=1388)
    parser.add_argument("--minute-share", type=float, default=0.03)
    parser.add_argument("--hour-share", type=float, default=0.20)
    parser.add_argument("--day-share", type=float, default=0.60)
    parser.add_argument("--profile", action="store_true", help="cProfile the steady polls (to stderr)")
    parser.add_argument("--trace-memory", action="store_true",
                        help="trace the Python heap over the first poll (slows it: CPU figures are then off)")
    parser.add_argument("--serve-api", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--exporter", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--api", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not 2 <= args.polls <= 1000:
        parser.error("--polls must be from 2 to 1000")
    shares = {"1m": args.minute_share, "1h": args.hour_share, "1d": args.day_share}
    if args.serve_api:
        serve_api(args.serve_api, args.label_sets, shares)
        return 0
    start = parse_time(args.start, "--start")
    trees = {}
    for item in args.tree or [f"this tree={REPO}"]:
        label, _, path = item.partition("=")
        if not path or not (Path(path) / "exporter" / "poller.py").is_file():
            parser.error(f"--tree {item}: expected LABEL=PATH of a checkout with exporter/poller.py")
        trees[label] = Path(path).resolve()
    if args.exporter:
        json.dump(run_exporter(args.api, start, args.polls, args.profile, args.trace_memory), sys.stdout)
        return 0

    port = free_port()
    api = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, __file__, "--serve-api", str(port), "--label-sets", str(args.label_sets),
                               "--minute-share", str(args.minute_share), "--hour-share", str(args.hour_share),
                               "--day-share", str(args.day_share)])
    try:
        wait_up(api + CLOCK_PATH)
        runs = {label: exporter_run(tree, api, args) for label, tree in trees.items()}
    finally:
        server.terminate()
        server.wait()

    print(f"{args.label_sets:,} label sets, {args.polls} usage polls a minute apart from {args.start};"
          f" python {sys.version.split()[0]}, {os.cpu_count()} cores, {datetime.now(UTC):%Y-%m-%d}\n")
    tables = {name: summary(run) for name, run in runs.items()}
    names = list(tables)
    print("| | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for key in dict.fromkeys(key for table in sorted(tables.values(), key=len, reverse=True) for key in table):
        print(f"| {key} | " + " | ".join(tables[name].get(key, "—") for name in names) + " |")
    print()
    for name, run in runs.items():
        print(f"{name}: output tokens per window at the last poll {run['output_tokens']}")
        if "held" in run:
            print(f"{name}: held after the steady polls: {run['held']}")
        if run["sleeps"]:
            print(f"{name}: the rate limiter slept {run['sleeps']} times")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
