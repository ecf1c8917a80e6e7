"""Concurrent scrapes with idle connections held open: latency, 503s, idle drops, server RSS and threads.

Run by hand (not a test), from the repository root:

    python bench/bench_load.py                             # scrapers back to back
    python bench/bench_load.py --scrapes 10 --interval 2   # all scrapers in step, every 2 s

For each ``--web.max-requests`` cap in ``--caps`` (default: the server's default, 40, then 0 =
no limit), a fresh exporter process serves ~50,000 series (the state is built as in
bench_scrape.py) with the real ExporterServer and its default read timeout; the process,
platform and GC metrics are rendered on every scrape, as exporter/cli.py does
(``--no-process-metrics`` leaves out the process ones, for comparison). All traffic goes to
127.0.0.1:

0. one scrape renders the polled part into the cache (timed: the first scrape after every poll
   pays it); then ``--burst`` connections are opened back to back and closed, to see how the
   listen queue copes;
1. ``--scrapers`` (100) scrapers, threads spread over ``--procs`` client processes, each open
   its kept-alive connection (http.client) and wait;
2. ``--idle`` (1,000) TCP connections are opened, ``--idle-pause`` apart, and left silent;
3. the scrapers are released together and ask for ``/metrics`` with Prometheus 2's Accept header
   and ``Accept-Encoding: gzip``, ``--scrapes`` times each, back to back or every ``--interval``
   seconds in step (at most ``--max-seconds``). Latency is from sending the request to the last
   byte of the body (read compressed; each scraper decompresses and checks its first and last
   body afterwards);
4. meanwhile the main process watches the idle connections (when the server closes each one)
   and samples the server's RSS and thread count from /proc every 0.25 s, until every idle
   connection is gone (read timeout + 15 s at most). The server's CPU time, and the CPU time
   the rest of the machine used meanwhile (others' work: interference), are reported too.

The exit status is 1 if a run without a cap (or with one of at least ``--scrapers``) saw any
answer but 200. Every loop is bounded in count and time; the servers are terminated at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import multiprocessing as mp
import os
import queue
import resource
import selectors
import socket
import statistics
import subprocess
import sys
import threading
import time
import zlib
from collections import Counter
from datetime import UTC, datetime

# What Prometheus 2 sends (tests/test_server.py): the exporter answers with OpenMetrics.
PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
                     "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
SAMPLE_EVERY = 0.25  # seconds between samples of the server and the idle connections


def build_state(series: int):
    """The scrape benchmark's ExporterState, about ``series`` samples."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench_scrape import build_state as scrape_state
    return scrape_state(series)


def serve_exporter(port: int, series: int, max_requests: int, process_metrics: bool = True) -> None:
    from prometheus_client import CollectorRegistry

    from exporter.collector import AdminCollector, ExpositionCache, runtime_registry
    from exporter.server import ExporterServer

    state = build_state(series)
    polled = CollectorRegistry(auto_describe=False)
    polled.register(AdminCollector(state))
    live = runtime_registry(process_metrics)  # rendered on every scrape, as exporter/cli.py's
    server = ExporterServer(("127.0.0.1", port), ExpositionCache(polled, live, lambda: state.generation), state,
                            max_requests=max_requests)
    server.serve_forever()


# --- the client side -----------------------------------------------------------------------

def raise_fd_limit() -> tuple[int, int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_up(port: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/-/healthy")
            if conn.getresponse().status == 200:
                conn.close()
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the exporter on port {port} did not come up")


def proc_status(pid: int) -> tuple[float, int]:
    """(RSS in MiB, threads) of a process."""
    rss, threads = float("nan"), -1
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    return rss, threads


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a process."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> float:
    """CPU seconds the machine has been busy (all CPUs, idle and iowait left out)."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    """CPU seconds of this process and of its children that have been waited for."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def check_body(raw: bytes) -> str | None:
    """None if ``raw`` is a whole gzip-compressed OpenMetrics exposition, else what is wrong."""
    try:
        text = zlib.decompress(raw, wbits=31)
    except zlib.error as exc:
        return f"gzip: {exc}"
    if not text.endswith(b"# EOF\n"):
        return "no # EOF at the end"
    if text.count(b"\nanthropic_usage_") < 1000:
        return "too few anthropic_usage_ samples"
    return None


def scraper(port: int, scrapes: int, interval: float, release, go_at, max_seconds: float, out: list,
            bodies: list, connected) -> None:
    """One Prometheus-like scraper on one kept-alive connection, connected first, then released with
    the others. Appends ("connect", 0, seconds, outcome), then (k, started, seconds, outcome) per
    scrape, ``started`` in seconds since the release, to ``out``; its first and last good bodies
    to ``bodies``. ``interval`` 0: back to back; else scrape k
    starts at k × interval (at once if the previous one ran late), as all in step."""
    headers = {"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip", "User-Agent": "Prometheus/2.53.0"}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    started = time.perf_counter()
    try:
        conn.connect()
        out.append(("connect", 0, time.perf_counter() - started, "ok"))
    except OSError as exc:
        out.append(("connect", 0, time.perf_counter() - started, type(exc).__name__))
        return
    finally:
        with connected.get_lock():
            connected.value += 1
    if not release.wait(timeout=120):
        out.append((0, 0.0, 0.0, "never released"))
        return
    go = go_at.value
    stop_at = go + max_seconds
    first_ok: bytes | None = None
    last_ok: bytes | None = None
    for k in range(scrapes):
        if interval:
            time.sleep(max(0.0, go + k * interval - time.time()))
        if time.time() > stop_at:
            break
        started = time.perf_counter()
        wall = time.time() - go
        try:
            conn.request("GET", "/metrics", headers=headers)
            response = conn.getresponse()
            body = response.read()
            elapsed = time.perf_counter() - started
        except (OSError, http.client.HTTPException) as exc:
            out.append((k, wall, time.perf_counter() - started, type(exc).__name__))
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            continue
        outcome = str(response.status)
        if response.status == 200:
            if response.getheader("Content-Encoding") != "gzip":
                outcome = "200 not gzip"
            else:
                first_ok = first_ok or body
                last_ok = body
        out.append((k, wall, elapsed, outcome))
        if response.getheader("Connection", "").lower() == "close":
            conn.close()
    conn.close()
    bodies.extend({id(b): b for b in (first_ok, last_ok) if b is not None}.values())


def client_process(port: int, threads: int, args: argparse.Namespace, release, go_at, results, connected,
                   all_done) -> None:
    outs: list[list] = [[] for _ in range(threads)]
    bodies: list[bytes] = []
    workers = [threading.Thread(target=scraper, args=(port, args.scrapes, args.interval, release, go_at,
                                                      args.max_seconds, outs[i], bodies, connected), daemon=True)
               for i in range(threads)]
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + 120 + args.max_seconds + 90
    for worker in workers:
        worker.join(timeout=max(1.0, deadline - time.monotonic()))
    # Checked once every scraper of every process is done, so that no check slows a scrape down.
    with contextlib.suppress(threading.BrokenBarrierError):
        all_done.wait(timeout=max(1.0, deadline - time.monotonic()))
    problems = [(0, 0.0, 0.0, f"bad body: {problem}") for problem in map(check_body, bodies) if problem]
    results.put([row for out in outs for row in out] + problems)


def listen_overflows() -> int:
    """The kernel's count of connections dropped because a listen queue was full (all sockets)."""
    with open("/proc/net/netstat") as fh:
        lines = fh.read().splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            return int(dict(zip(names.split(), values.split(), strict=True))["ListenOverflows"])
    return -1


def burst(port: int, count: int) -> tuple[float, list[float]]:
    """``count`` connections opened one after the other at once, then closed: (seconds, connect times)."""
    sockets, times = [], []
    started = time.perf_counter()
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.settimeout(10)
            t = time.perf_counter()
            try:
                sock.connect(("127.0.0.1", port))
            except OSError:
                sock.close()
                continue
            times.append(time.perf_counter() - t)
            sockets.append(sock)
    finally:
        for sock in sockets:
            sock.close()
    return time.perf_counter() - started, times


def open_idle(port: int, count: int, pause: float) -> tuple[list[tuple[socket.socket, float]], list[float], Counter]:
    """``count`` connections that never send a byte, ``pause`` apart: (socket, opened at), connect
    times, failures."""
    sockets, connect_times, failures = [], [], Counter()
    for _ in range(count):
        time.sleep(pause)
        sock = socket.socket()
        sock.settimeout(10)
        started = time.perf_counter()
        try:
            sock.connect(("127.0.0.1", port))
        except OSError as exc:
            failures[type(exc).__name__] += 1
            sock.close()
            continue
        connect_times.append(time.perf_counter() - started)
        sock.setblocking(False)
        sockets.append((sock, time.monotonic()))
    return sockets, connect_times, failures


def percentile(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def run_one(args: argparse.Namespace, cap: int) -> dict:
    from exporter.server import DEFAULT_READ_TIMEOUT

    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve", "--port", str(port), "--series",
                               str(args.series), "--cap", str(cap),
                               *(["--no-process-metrics"] if not args.process_metrics else [])])
    try:
        wait_up(port)
        # The first scrape renders the polled part into the cache (as the first scrape after each
        # poll does); time it, then measure the cached state.
        started = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        conn.request("GET", "/metrics", headers={"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"})
        warm_body = conn.getresponse().read()
        warm_seconds = time.perf_counter() - started
        conn.close()
        if check_body(warm_body):
            raise SystemExit(f"the first scrape's body is wrong: {check_body(warm_body)}")
        base_rss, base_threads = proc_status(server.pid)
        # Connections opened back to back, as fast as one client can: how the listen queue copes.
        overflows0 = listen_overflows()
        burst_seconds, burst_times = burst(port, args.burst)
        burst_overflows = listen_overflows() - overflows0
        settle = time.monotonic() + 10
        while proc_status(server.pid)[1] > base_threads and time.monotonic() < settle:
            time.sleep(0.1)
        cpu0 = proc_cpu(server.pid)
        machine0, mine0, t_machine0 = machine_busy(), own_cpu(), time.monotonic()

        # The scrapers' processes first (forked before the idle sockets exist, so they hold no
        # copy of them); each connects, then waits to be released with the others.
        ctx = mp.get_context("fork")
        results = ctx.Queue()
        release = ctx.Event()
        go_at = ctx.Value("d", 0.0)
        connected = ctx.Value("i", 0)
        per_proc = [args.scrapers // args.procs + (1 if i < args.scrapers % args.procs else 0)
                    for i in range(args.procs)]
        per_proc = [n for n in per_proc if n]
        all_done = ctx.Barrier(len(per_proc))
        clients = [ctx.Process(target=client_process, args=(port, n, args, release, go_at, results, connected,
                                                            all_done), daemon=True)
                   for n in per_proc]
        overflows0 = listen_overflows()
        for client in clients:
            client.start()
        wait_until = time.monotonic() + 60  # a connect whose SYNs are dropped retries after 1, 3, 7, 15 s
        while connected.value < args.scrapers and time.monotonic() < wait_until:
            time.sleep(0.05)
        scraper_overflows = listen_overflows() - overflows0

        # 1. the idle connections
        t_open = time.monotonic()
        overflows0 = listen_overflows()
        idle, connect_times, connect_failures = open_idle(port, args.idle, args.idle_pause)
        idle_overflows = listen_overflows() - overflows0
        open_seconds = time.monotonic() - t_open
        selector = selectors.DefaultSelector()
        for sock, opened in idle:
            selector.register(sock, selectors.EVENT_READ, opened)
        time.sleep(0.5)  # let the server's accept loop catch up before counting its threads
        idle_rss, idle_threads = proc_status(server.pid)

        # 2. the scrapers, released together
        go = go_at.value = time.time()
        release.set()
        stop_at = go + args.max_seconds

        # 3. watch: idle connections closed by the server, the server's RSS / threads / CPU
        lifetimes: list[float] = []  # seconds from connect to the server's close, per idle connection
        closed_how: Counter = Counter()
        samples: list[tuple[float, float, int, int]] = []  # (seconds since go, RSS MiB, threads, idle left)
        rows: list = []
        collected = 0
        watch_until = max(stop_at, time.time() + DEFAULT_READ_TIMEOUT + 15)
        samples.append((0.0, *proc_status(server.pid), len(selector.get_map())))
        scrape_end = None
        while time.time() < watch_until:
            for key, _ in selector.select(timeout=SAMPLE_EVERY):
                sock = key.fileobj
                try:
                    data = sock.recv(1)
                    how = "data (unexpected)" if data else "closed (EOF)"
                except ConnectionResetError:
                    how = "reset"
                except BlockingIOError:
                    continue
                closed_how[how] += 1
                lifetimes.append(time.monotonic() - key.data)
                selector.unregister(sock)
                sock.close()
            while collected < len(clients):
                try:
                    rows.extend(results.get_nowait())
                except queue.Empty:
                    break
                collected += 1
                if collected == len(clients):
                    scrape_end = max((t + s for k, t, s, _ in rows if k != "connect"), default=0.0)
            rss, threads = proc_status(server.pid)
            samples.append((time.time() - go, rss, threads, len(selector.get_map())))
            if collected == len(clients) and not selector.get_map():
                break
        for key in list(selector.get_map().values()):
            selector.unregister(key.fileobj)
            key.fileobj.close()
        while collected < len(clients):  # bounded: the scrapers stop by stop_at
            rows.extend(results.get(timeout=max(1.0, stop_at - time.time() + 120)))
            collected += 1
            scrape_end = max((t + s for k, t, s, _ in rows if k != "connect"), default=0.0)
        for client in clients:
            client.join(timeout=30)
        cpu = proc_cpu(server.pid) - cpu0
        others = machine_busy() - machine0 - (own_cpu() - mine0) - cpu
        watched = time.monotonic() - t_machine0
        end_rss, end_threads = proc_status(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)

    scraper_connects = [seconds for k, _, seconds, _ in rows if k == "connect"]
    connect_errors = Counter(outcome for k, _, _, outcome in rows if k == "connect" and outcome != "ok")
    rows = [row for row in rows if row[0] != "connect"]
    outcomes = Counter(outcome for _, _, _, outcome in rows)
    ok = [seconds for _, _, seconds, outcome in rows if outcome == "200"]
    ok_later = [seconds for k, _, seconds, outcome in rows if outcome == "200" and k > 0]
    slowest = max(((seconds, k) for k, _, seconds, outcome in rows if outcome == "200"), default=(0.0, -1))
    by_round: dict[int, list[float]] = {}
    for k, _, seconds, outcome in rows:
        if outcome == "200":
            by_round.setdefault(k, []).append(seconds)
    per_round = Counter(k for k, _, _, outcome in rows if outcome == "503")
    during = [s for s in samples if scrape_end is None or s[0] <= scrape_end]
    return {
        "cap": cap, "read_timeout": DEFAULT_READ_TIMEOUT, "base_rss": base_rss, "base_threads": base_threads,
        "idle_open": len(idle), "connect_failures": connect_failures, "open_seconds": open_seconds,
        "connect_times": connect_times,
        "idle_rss": idle_rss, "idle_threads": idle_threads, "outcomes": outcomes, "ok": ok, "ok_later": ok_later,
        "slowest_k": slowest[1],
        "refused_per_round": [per_round[k] for k in range(args.scrapes)],
        "round_latency": [(statistics.median(by_round[k]), max(by_round[k])) if k in by_round else None
                          for k in range(args.scrapes)],
        "scrape_seconds": scrape_end, "lifetimes": lifetimes, "closed_how": closed_how, "samples": samples,
        "peak_rss": max(s[1] for s in during), "peak_threads": max(s[2] for s in during),
        "end_rss": end_rss, "end_threads": end_threads, "cpu": cpu, "others": others, "watched": watched,
        "idle_left_at_scrape_end": min((s[3] for s in samples if scrape_end is not None and s[0] <= scrape_end),
                                       default=len(idle)),
        "warm_seconds": warm_seconds,
        "rows": rows, "burst_seconds": burst_seconds, "burst_times": burst_times, "burst_overflows": burst_overflows,
        "scraper_connects": scraper_connects, "scraper_connect_errors": connect_errors,
        "scraper_overflows": scraper_overflows, "idle_overflows": idle_overflows,
    }


def report(args: argparse.Namespace, runs: list[dict]) -> None:
    r0 = runs[0]
    mode = (f"each scrape {args.interval:g} s after the previous one began, all {args.scrapers} in step"
            if args.interval else "back to back")
    served = "" if args.process_metrics else " (served WITHOUT the process_* metrics)"
    print(f"{args.series:,} series asked for{served}; {args.idle:,} idle connections; {args.scrapers} scrapers x"
          f" {args.scrapes} scrapes ({mode}) over {args.procs} client processes; server read timeout"
          f" {r0['read_timeout']:.0f} s; python {sys.version.split()[0]}, {os.cpu_count()} cores,"
          f" {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; load average before: {args.load_before}\n")
    print("| --web.max-requests | scrapes | 200 | 503 | other errors | p50 ms | p99 ms | p99 ms after the first |"
          " max ms (its scraper's scrape #) | scrapes/s | scrape phase s | server CPU s (ms per scrape) |"
          " other processes' CPU s |")
    print("|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in runs:
        outcomes = r["outcomes"]
        others = ", ".join(f"{k}: {v}" for k, v in sorted(outcomes.items()) if k not in ("200", "503")) or "none"
        total = sum(outcomes.values())
        rate = total / r["scrape_seconds"] if r["scrape_seconds"] else float("nan")
        print(f"| {r['cap'] or '0 (no limit)'} | {total:,} | {outcomes['200']:,} | {outcomes['503']:,} | {others} |"
              f" {percentile(r['ok'], 50) * 1000:.0f} | {percentile(r['ok'], 99) * 1000:.0f} |"
              f" {percentile(r['ok_later'], 99) * 1000:.0f} | {max(r['ok'], default=float('nan')) * 1000:.0f}"
              f" (#{r['slowest_k'] + 1}) |"
              f" {rate:.0f} | {r['scrape_seconds']:.1f} | {r['cpu']:.1f} ({r['cpu'] / max(total, 1) * 1000:.1f}) |"
              f" {r['others']:.1f} in {r['watched']:.0f} s |")
    print("\nLatencies are of the scrapes answered 200, from sending the request to the body's last byte;"
          " \"after the first\" leaves out each scraper's first scrape. Before them, one scrape rendered the"
          " polled part into the cache: " + ", ".join(f"{r['warm_seconds'] * 1000:.0f} ms" for r in runs) + "."
          " Other processes' CPU: the machine's busy time (/proc/stat) less this bench's processes', from starting"
          " the scrapers to the end of the run: work of others on the machine.")
    if args.interval:
        print("\n| --web.max-requests | round by round: 503s (of " + str(args.scrapers) + ") |"
              " round by round: median / max ms of the 200s |")
        print("|---|---|---|")
        for r in runs:
            latency = ", ".join(f"{m * 1000:.0f}/{x * 1000:.0f}" if m is not None else "-"
                                for m, x in (lat or (None, None) for lat in r["round_latency"]))
            print(f"| {r['cap'] or '0 (no limit)'} | {', '.join(str(n) for n in r['refused_per_round'])} |"
                  f" {latency} |")
    print()
    print("Opening connections (a connect of about 1 s or more waited for a SYN the kernel dropped because the"
          " listen queue was full; ListenOverflows is the kernel's count for all sockets on the machine):\n")
    print("| --web.max-requests | what | connections | took s | connects >= 0.9 s | slowest s | ListenOverflows |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in runs:
        cap = r["cap"] or "0 (no limit)"
        for what, seconds, times, overflows in (
            (f"{args.burst} back to back, one client", r["burst_seconds"], r["burst_times"], r["burst_overflows"]),
            (f"{args.scrapers} scrapers at once", None, r["scraper_connects"], r["scraper_overflows"]),
            (f"{args.idle:,} idle, {args.idle_pause * 1000:g} ms apart", r["open_seconds"], r["connect_times"],
             r["idle_overflows"]),
        ):
            slow = sum(1 for t in times if t >= 0.9)
            took = f"{seconds:.1f}" if seconds is not None else "-"
            print(f"| {cap} | {what} | {len(times):,} | {took} | {slow} | {max(times, default=0):.2f} | {overflows} |")
    print()
    print("| --web.max-requests | idle opened | failed connects | idle left when scrapes ended |"
          " closed by the server: count, lifetime min / median / max s | how |")
    print("|---|---:|---|---:|---|---|")
    for r in runs:
        life = sorted(r["lifetimes"])
        lifetimes = (f"{len(life):,}: {life[0]:.1f} / {statistics.median(life):.1f} / {life[-1]:.1f}"
                     if life else "0")
        failed = ", ".join(f"{k}: {v}" for k, v in r["connect_failures"].items()) or "none"
        failed += "".join(f"; scrapers' {k}: {v}" for k, v in r["scraper_connect_errors"].items())
        how = ", ".join(f"{k}: {v}" for k, v in r["closed_how"].items()) or "-"
        print(f"| {r['cap'] or '0 (no limit)'} | {r['idle_open']:,} | {failed} |"
              f" {r['idle_left_at_scrape_end']:,} | {lifetimes} | {how} |")
    print()
    print("| --web.max-requests | server RSS MiB: serving, + idle, peak during scrapes, end |"
          " threads: serving, + idle, peak during scrapes, end |")
    print("|---|---|---|")
    for r in runs:
        print(f"| {r['cap'] or '0 (no limit)'} | {r['base_rss']:.0f}, {r['idle_rss']:.0f}, {r['peak_rss']:.0f},"
              f" {r['end_rss']:.0f} | {r['base_threads']}, {r['idle_threads']}, {r['peak_threads']},"
              f" {r['end_threads']} |")
    for r in runs:
        print(f"\nTimeline, --web.max-requests={r['cap']} (seconds since the scrapers were released; the scrape"
              f" phase ended at {r['scrape_seconds']:.1f} s):\n")
        print("| t s | idle connections open | server threads | server RSS MiB | scrapes done | 503s so far |")
        print("|---:|---:|---:|---:|---:|---:|")
        ends = sorted((t + s, outcome) for _, t, s, outcome in r["rows"] if s)
        marks = sorted({0.0, *(float(t) for t in range(5, int(r["samples"][-1][0]) + 5, 5))})
        for mark in marks:
            before = [s for s in r["samples"] if s[0] <= mark]
            if not before:
                continue
            _, rss, threads, left = before[-1]
            done = sum(1 for end, _ in ends if end <= mark)
            refused = sum(1 for end, outcome in ends if end <= mark and outcome == "503")
            print(f"| {mark:.0f} | {left:,} | {threads:,} | {rss:.0f} | {done:,} | {refused:,} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", type=int, default=50_000)
    parser.add_argument("--caps", default="40,0", help="--web.max-requests values, one run each (0: no limit)")
    parser.add_argument("--idle", type=int, default=1000, help="idle connections held open")
    parser.add_argument("--idle-pause", type=float, default=0.002,
                        help="seconds between opening two idle connections (default 0.002)")
    parser.add_argument("--burst", type=int, default=60,
                        help="connections opened back to back before the run, to probe the listen queue")
    parser.add_argument("--scrapers", type=int, default=100)
    parser.add_argument("--scrapes", type=int, default=30, help="scrapes per scraper")
    parser.add_argument("--interval", type=float, default=0,
                        help="0: each scraper scrapes back to back; else every INTERVAL s, all in step")
    parser.add_argument("--procs", type=int, default=10, help="client processes the scrapers are spread over")
    parser.add_argument("--max-seconds", type=float, default=120, help="the scrape phase stops by then")
    parser.add_argument("--no-process-metrics", dest="process_metrics", action="store_false",
                        help="serve without prometheus_client's ProcessCollector (process_* metrics), for comparison")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--cap", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_exporter(args.port, args.series, args.cap, args.process_metrics)
        return 0
    for name in ("scrapers", "scrapes", "procs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.idle < 0 or args.burst < 0:
        parser.error("--idle and --burst must be 0 or more")
    soft, hard = raise_fd_limit()
    needed = args.idle + args.scrapers + 100
    if soft < needed:
        parser.error(f"the open-file limit is {soft} (hard {hard}); {needed} are needed")
    args.load_before = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    runs = []
    for cap in (int(c) for c in args.caps.split(",")):
        print(f"run with --web.max-requests={cap} ...", file=sys.stderr, flush=True)
        runs.append(run_one(args, cap))
    report(args, runs)
    uncapped = [r for r in runs if r["cap"] == 0 or r["cap"] >= args.scrapers]
    failed = any(set(r["outcomes"]) - {"200"} or r["scraper_connect_errors"] for r in uncapped)
    failed = failed or any(o.startswith("bad body") for r in runs for o in r["outcomes"])
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
