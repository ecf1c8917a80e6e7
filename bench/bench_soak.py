"""Soak: a real Poller (default configuration) polls the simulator 1,000 times with faults injected.

Run by hand (not a test):  python bench/bench_soak.py [--polls 1000] [--fault-seed 1]

The simulator (exporter.simulator) runs in a process of its own on 127.0.0.1, so the RSS read
from /proc/self/status here is the exporter's alone (the poller, its held buckets, its state and
one rendering of the exposition per minute, as a scrape would). Both sides read one injected
clock, shared memory set by this process:

* the clock starts at --start (default 2026-03-31 12:30:15 UTC) and moves a minute per usage
  poll, so 1,000 polls cover 16 h 40 min and cross midnight and a month's end; at each minute
  boundary the poller re-sums its windows without a poll (``Poller.resum``, as ``Poller.run``
  does), then the minute's polls run at :15;
* the other reports are polled on their default intervals counted in minutes of that clock:
  cost every 5th minute, rate limits every 15th, API keys, workspaces and Claude Code every 60th;
* the poller's ``sleep`` does nothing, so retries and pacing do not wait (the monotonic clock
  is the real one);
* before a minute's polls, with probability --fault-rate, one fault is injected on the path of
  one report due that minute (seeded, --fault-seed): "429" (retry-after 0), "500", "529",
  "truncated", "malformed_json" or "slow" (0.01-0.1 s), 1 to 6 times in a row (the client makes
  at most 5 attempts, so 5 or 6 fail the poll if each is retried; a malformed body is not
  retried). --timeouts of the "slow" faults instead outlast the client's request timeout (30 s
  of real waiting each), so the timeout path is taken too.

Every --rss-every polls the RSS of both processes is sampled (with --heap, also the exporter's
Python heap as tracemalloc counts it, which tells a leak from the allocator keeping a peak).
At the end the faults are cleared, the clock moves one more minute, every report is polled
once, and the usage and cost figures are compared with the simulator's own sums
(tests/expected.py, the spans of the default windows written out there) and with a fresh
poller's full fetch. Exit status: 0 if they all equal and no
poll failed for an unexpected exception ("internal"), 1 otherwise, 2 if the run was cut short by
--max-seconds.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import os
import random
import sys
import time
import tracemalloc
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from expected import expected_cost, expected_usage  # tests/expected.py

from exporter.admin_api import ENDPOINTS
from exporter.simulator import ADMIN_KEY, SimulatedOrganization, SimulatorServer

MINUTE = timedelta(minutes=1)
FAULT_KINDS = ("429", "500", "529", "truncated", "malformed_json", "slow")
# Every how many minutes each report is polled: its default interval (exporter.config.PollIntervals).
REPORT_PATHS = {
    "usage": [ENDPOINTS["usage_report_messages"]],
    "cost": [ENDPOINTS["cost_report"]],
    "api_keys": [ENDPOINTS["api_keys"]],
    "workspaces": [ENDPOINTS["workspaces"]],
    "rate_limits": [ENDPOINTS["rate_limits"], "/v1/organizations/workspaces/"],
    "claude_code": [ENDPOINTS["usage_report_claude_code"]],
}


def heap_mib() -> float | None:
    """The Python heap tracemalloc counts now, if it is tracing."""
    return tracemalloc.get_traced_memory()[0] / 2**20 if tracemalloc.is_tracing() else None


def rss_mib(pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def endpoint_of(path: str) -> str:
    for name, template in ENDPOINTS.items():
        if path == template:
            return name
    if path.startswith("/v1/organizations/workspaces/") and path.endswith("/rate_limits"):
        return "workspace_rate_limits"
    return path


class SharedClock:
    """A UTC clock both processes read: seconds since the epoch in shared memory."""

    def __init__(self, value):
        self.value = value

    def __call__(self) -> datetime:
        return datetime.fromtimestamp(self.value.value, UTC)

    def set(self, moment: datetime) -> None:
        self.value.value = moment.timestamp()


def simulator_process(seed: int, clock_value, conn, idle_limit: float) -> None:
    """Serves the simulated organization; answers commands from the bench over ``conn``."""
    logging.basicConfig(level=logging.ERROR)
    server = SimulatorServer(SimulatedOrganization(seed=seed, clock=SharedClock(clock_value))).start()
    conn.send(server.url)
    requests: Counter[tuple[str, int]] = Counter()

    def drain() -> None:
        # Called while the poller is idle; every request is recorded before its answer goes out.
        recorded = server.requests
        server.reset_requests()
        for request in recorded:
            if not request.path.startswith("/_simulator"):
                requests[(endpoint_of(request.path), request.status)] += 1

    try:
        while conn.poll(idle_limit):  # bounded: exits if the bench goes quiet
            command, *params = conn.recv()
            if command == "inject":
                prefix, fault, times, extra = params
                server.inject(prefix, fault, times=times, **extra)
                conn.send(None)
            elif command == "pending":
                with urllib.request.urlopen(server.url + "/_simulator/faults", timeout=10) as response:
                    conn.send(json.load(response)["faults"])
            elif command == "clear":
                server.clear_faults()
                conn.send(None)
            elif command == "stats":
                drain()
                conn.send((dict(requests), rss_mib()))
            elif command == "stop":
                break
    finally:
        server.stop()
        conn.close()


class Simulator:
    """The bench's side of the simulator process."""

    def __init__(self, seed: int, clock_value, idle_limit: float):
        ctx = mp.get_context("fork")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=simulator_process, args=(seed, clock_value, child, idle_limit), daemon=True)
        self.process.start()
        if not self.conn.poll(60):
            raise SystemExit("the simulator did not start")
        self.url: str = self.conn.recv()

    def call(self, *command):
        self.conn.send(command)
        if not self.conn.poll(120):
            raise SystemExit(f"the simulator did not answer {command[0]!r}")
        return self.conn.recv()

    def stop(self) -> None:
        self.conn.send(("stop",))
        self.process.join(timeout=30)
        if self.process.is_alive():
            self.process.terminate()


def figures(state, report: str) -> dict:
    snapshot = state.status("acme", report).snapshot
    return {(labels, w): v for labels, per_window in snapshot.series.items() for w, v in per_window.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--polls", type=int, default=1000, help="usage polls, one per simulated minute")
    parser.add_argument("--seed", type=int, default=7, help="the simulated organization's seed")
    parser.add_argument("--fault-seed", type=int, default=1)
    parser.add_argument("--fault-rate", type=float, default=0.15, help="chance of a fault injection per minute")
    parser.add_argument("--timeouts", type=int, default=1, help="slow faults that outlast the request timeout")
    parser.add_argument("--start", default="2026-03-31T12:30:15+00:00")
    parser.add_argument("--rss-every", type=int, default=50)
    parser.add_argument("--heap", action="store_true",
                        help="also sample the Python heap (tracemalloc; the polls run slower)")
    parser.add_argument("--max-seconds", type=float, default=1800, help="stop the polls after this long")
    args = parser.parse_args()
    if args.polls < 1 or args.rss_every < 1:
        parser.error("--polls and --rss-every must be at least 1")
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")

    from prometheus_client import CollectorRegistry

    from exporter.collector import AdminCollector, ExpositionCache
    from exporter.config import Config, Organization, Secret
    from exporter.poller import Poller
    from exporter.state import ExporterState

    if args.heap:
        tracemalloc.start()
    started_wall = time.monotonic()
    load_before = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    start = datetime.fromisoformat(args.start).astimezone(UTC)
    clock_value = mp.get_context("fork").Value("d", start.timestamp(), lock=False)
    clock = SharedClock(clock_value)
    sim = Simulator(args.seed, clock_value, idle_limit=args.max_seconds + 600)
    config = Config(organizations=(Organization("acme", Secret(ADMIN_KEY), sim.url),))
    state = ExporterState(["acme"], ENDPOINTS)
    poller = Poller(config.organizations[0], config, state, clock=clock, sleep=lambda seconds: None)
    polled = CollectorRegistry(auto_describe=False)
    polled.register(AdminCollector(state))
    exposition = ExpositionCache(polled, CollectorRegistry(), lambda: state.generation)
    every = {report: max(1, round(getattr(config.poll_intervals, report) / 60)) for report in poller.reports}
    request_timeout = config.http.request_timeout

    rng = random.Random(args.fault_seed)
    timeout_steps = set(rng.sample(range(1, args.polls), min(args.timeouts, args.polls - 1)))
    injected: Counter[str] = Counter()  # fault kind -> requests it was set for
    injections: Counter[str] = Counter()  # fault kind -> injections
    polls: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    streak: Counter[str] = Counter()  # failed polls in a row, now
    longest: Counter[str] = Counter()  # ... and at most
    withheld: Counter[str] = Counter()  # minutes whose figures were withheld as stale, per windowed report
    # (polls, clock, exporter MiB, its Python heap MiB or None, simulator MiB, exposition bytes)
    rss: list[tuple[int, str, float, float | None, float, int]] = []
    steps_done = 0
    first_step_seconds = 0.0
    cut_short = False
    exposition_bytes = 0
    try:
        for step in range(args.polls):
            if time.monotonic() - started_wall > args.max_seconds:
                cut_short = True
                break
            moment = start + step * MINUTE
            if step:
                clock.set(moment.replace(second=0, microsecond=0))
                poller.resum()  # the minute boundary, as Poller.run re-sums there
            clock.set(moment)
            due = [report for report in poller.reports if step % every[report] == 0]
            slow_for = 0.0
            if step in timeout_steps:
                slow_for = request_timeout + 1
                sim.call("inject", REPORT_PATHS["usage"][0], "slow", 1, {"delay": slow_for})
                injected["slow (timeout)"] += 1
                injections["slow (timeout)"] += 1
            elif rng.random() < args.fault_rate:
                report = rng.choice(due)
                prefix = rng.choice(REPORT_PATHS[report])
                kind = rng.choice(FAULT_KINDS)
                times = rng.randint(1, 3) if kind == "slow" else rng.randint(1, 6)
                extra = ({"retry_after": 0} if kind == "429" else
                         {"delay": round(rng.uniform(0.01, 0.1), 3)} if kind == "slow" else {})
                sim.call("inject", prefix, kind, times, extra)
                injected[kind] += times
                injections[kind] += 1
            began = time.monotonic()
            for report in due:
                polls[report] += 1
                if poller.poll(report):
                    streak[report] = 0
                else:
                    failed[report] += 1
                    streak[report] += 1
                    longest[report] = max(longest[report], streak[report])
            for report in ("usage", "cost", "claude_code"):
                snapshot = state.status("acme", report).snapshot
                if snapshot is not None and snapshot.withheld:
                    withheld[report] += 1
            if slow_for:  # let the simulator's slow answer finish before its requests are counted
                time.sleep(max(0.0, slow_for - (time.monotonic() - began)) + 0.2)
            exposition_bytes = len(exposition.render(openmetrics=True, gzip=False))  # one scrape a minute
            steps_done = step + 1
            if step == 0:
                first_step_seconds = time.monotonic() - started_wall
            if steps_done % args.rss_every == 0 or steps_done == 1:
                _, sim_rss = sim.call("stats")
                rss.append((steps_done, f"{moment:%m-%d %H:%M}", rss_mib(), heap_mib(), sim_rss, exposition_bytes))
        pending = sim.call("pending")
        sim.call("clear")

        # The last good poll: every report, the clock a minute on.
        last = start + steps_done * MINUTE
        clock.set(last)
        final_ok = {report: poller.poll(report) for report in poller.reports}
        sim_requests, sim_rss = sim.call("stats")
        rss.append((steps_done, f"{last:%m-%d %H:%M} (final)", rss_mib(), heap_mib(), sim_rss, exposition_bytes))
        api_requests, poll_errors, _ = state.counters()
        # A fresh poller's full fetch, at the same clock.
        fresh_state = ExporterState(["acme"], ENDPOINTS)
        fresh = Poller(config.organizations[0], config, fresh_state, clock=clock, sleep=lambda seconds: None)
        fresh_ok = fresh.poll("usage") and fresh.poll("cost")
    finally:
        sim.stop()
    wall = time.monotonic() - started_wall

    # The simulator's own sums, from an organization of the same seed at the same clock.
    org = SimulatedOrganization(seed=args.seed, clock=clock)
    want_usage = expected_usage(org, config.windows, config.group_by, clock())
    want_cost = expected_cost(org, config.windows, clock())
    got_usage, got_cost = figures(state, "usage"), figures(state, "cost")
    checks = {
        "final polls all succeeded": all(final_ok.values()),
        "usage equals the simulator's sums": got_usage == want_usage,
        "cost equals the simulator's sums": got_cost == want_cost,
        "usage equals a fresh full fetch": fresh_ok and got_usage == figures(fresh_state, "usage"),
        "cost equals a fresh full fetch": fresh_ok and got_cost == figures(fresh_state, "cost"),
        "no poll failed for an unexpected exception (internal)":
            sum(n for (_, _, reason), n in poll_errors.items() if reason == "internal") == 0,
    }

    print(f"Soak: {steps_done:,} usage polls from {start:%Y-%m-%d %H:%M:%S} to {last:%Y-%m-%d %H:%M:%S} UTC"
          f" (simulated), seed {args.seed}, fault seed {args.fault_seed}, fault rate {args.fault_rate:g}/minute;"
          f" python {sys.version.split()[0]}, {os.cpu_count()} cores, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC,"
          f" load average before: {load_before}\n")
    print(f"Wall time: {wall:.1f} s (the first minute, with the backfill: {first_step_seconds:.1f} s).\n")
    print("| report | polls | failed | most failed in a row | minutes withheld as stale | then the final poll |")
    print("|---|---:|---:|---:|---:|---|")
    for report in poller.reports:
        stale = f"{withheld[report]:,}" if report in ("usage", "cost", "claude_code") else "-"
        print(f"| {report} | {polls[report]:,} | {failed[report]:,} | {longest[report]} | {stale} |"
              f" {'ok' if final_ok.get(report) else 'FAILED'} |")
    print(f"| all | {sum(polls.values()):,} | {sum(failed.values()):,} | | | |")
    print("\nPoll errors by reason (anthropic_exporter_poll_errors_total):",
          ", ".join(f"{report}/{reason}: {n}" for (_, report, reason), n in sorted(poll_errors.items()) if n) or "none")
    print("\n| fault | injections | requests it was set for |")
    print("|---|---:|---:|")
    for kind in (*FAULT_KINDS, "slow (timeout)"):
        if injections[kind]:
            print(f"| {kind} | {injections[kind]} | {injected[kind]} |")
    print(f"| all | {sum(injections.values())} | {sum(injected.values())} |")
    left = sum(f["remaining"] for f in pending)
    print(f"\nNot yet served when the faults were cleared: {left} ({', '.join(f['fault'] for f in pending) or '-'}).")
    by_code: Counter[str] = Counter()
    for (_, _, code), n in api_requests.items():
        by_code[code] += n
    sim_by_code: Counter[str] = Counter()
    for (_, status), n in sim_requests.items():
        sim_by_code[str(status)] += n
    print("\nRequests: the exporter's count of its attempts (anthropic_exporter_api_requests_total) by code: "
          + ", ".join(f"{code}: {n:,}" for code, n in sorted(by_code.items())) + f"; total {sum(by_code.values()):,}.")
    print("The simulator's count of the requests it answered, by status: "
          + ", ".join(f"{code}: {n:,}" for code, n in sorted(sim_by_code.items()))
          + f"; total {sum(sim_by_code.values()):,} (a truncated or malformed answer is a 200 there; the fresh"
          " poller's requests are not in either count).")
    per_endpoint: Counter[str] = Counter()
    for (_, endpoint, _), n in api_requests.items():
        per_endpoint[endpoint] += n
    print("By endpoint: " + ", ".join(f"{e}: {n:,}" for e, n in sorted(per_endpoint.items())) + ".")
    print("\n| polls | clock (UTC) | exporter RSS MiB | exporter Python heap MiB | simulator RSS MiB"
          " | exposition bytes |")
    print("|---:|---|---:|---:|---:|---:|")
    for polls_done, at, mine, heap, theirs, size in rss:
        print(f"| {polls_done:,} | {at} | {mine:.1f} | {'-' if heap is None else f'{heap:.1f}'} | {theirs:.1f}"
              f" | {size:,} |")
    print(f"\nFinal figures: {len(got_usage):,} usage (label set, window) pairs, {len(got_cost):,} cost pairs.")
    for name, ok in checks.items():
        print(f"- {name}: {'yes' if ok else 'NO'}")
    if got_usage != want_usage:
        diff = [k for k in set(got_usage) | set(want_usage) if got_usage.get(k) != want_usage.get(k)]
        print(f"  usage differs in {len(diff)} pairs, e.g. {sorted(diff, key=str)[:3]}")
    if got_cost != want_cost:
        diff = [k for k in set(got_cost) | set(want_cost) if got_cost.get(k) != want_cost.get(k)]
        print(f"  cost differs in {len(diff)} pairs, e.g. {sorted(diff, key=str)[:3]}")
    if cut_short:
        print(f"\nCut short by --max-seconds after {steps_done} of {args.polls} polls.")
        return 2
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
