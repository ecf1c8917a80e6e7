"""Scrape latency and memory at high cardinality: the exporter vs plain gauges vs a static file.

Run by hand (not a test):  python bench/bench_scrape.py [--series 50000] [--scrapes 200]

Each contender runs in its own process, serving the same ~50,000 series:
  exporter      this project's server: the polled part rendered once per poll (ExpositionCache)
  plain-gauges  the same data as ordinary prometheus_client Gauges, rendered on every scrape
  static-file   the exporter's bytes written to a file and served by `python -m http.server`
The client scrapes each one sequentially and reports p50/p99 latency and the server's RSS.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime

import requests

USAGE_METRICS_PER_LABEL_SET = 6  # 4 usage gauges + cache creation for two TTLs


def build_state(series: int):
    """An ExporterState whose usage snapshot yields about ``series`` samples."""
    from exporter.admin_api import UsageValues
    from exporter.config import DEFAULT_GROUP_BY, DEFAULT_WINDOWS
    from exporter.snapshot import UsageSnapshot
    from exporter.state import ExporterState

    windows = tuple(w.name for w in DEFAULT_WINDOWS)
    label_sets = series // (USAGE_METRICS_PER_LABEL_SET * len(windows))
    data = {}
    for i in range(label_sets):
        labels = (
            f"wrkspc_{i % 40:024d}",
            f"apikey_{i % 350:024d}",
            f"claude-model-{i % 12}",
            ("standard", "batch", "priority")[i % 3],
            ("0-200k", "200k-1M")[i % 2],
        )
        data[labels] = {w: UsageValues(i * 11, i * 7, i * 3, i, i * 5, i % 4) for w in windows}
    state = ExporterState(["acme"], ["usage_report_messages"])
    state.succeeded("acme", "usage", UsageSnapshot(DEFAULT_GROUP_BY, data, time.time()), time.time(), 0.1)
    return state


def serve_exporter(port: int, series: int) -> None:
    from prometheus_client import CollectorRegistry, ProcessCollector

    from exporter.collector import AdminCollector, ExpositionCache
    from exporter.server import ExporterServer

    state = build_state(series)
    polled = CollectorRegistry(auto_describe=False)
    polled.register(AdminCollector(state))
    live = CollectorRegistry()
    ProcessCollector(registry=live)
    server = ExporterServer(("127.0.0.1", port), ExpositionCache(polled, live, lambda: state.generation), state)
    server.serve_forever()


def serve_plain_gauges(port: int, series: int) -> None:
    from prometheus_client import CollectorRegistry, Gauge, ProcessCollector, start_http_server

    from exporter.collector import AdminCollector

    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    gauges: dict[str, Gauge] = {}
    # Same families, labels and values as the exporter, held as ordinary labelled gauges.
    source = CollectorRegistry(auto_describe=False)
    source.register(AdminCollector(build_state(series)))
    for family in source.collect():
        if family.type != "gauge" or not family.samples:
            continue
        label_names = list(family.samples[0].labels)
        gauge = gauges[family.name] = Gauge(family.name, family.documentation, label_names, registry=registry)
        for sample in family.samples:
            gauge.labels(**sample.labels).set(sample.value)
    del source
    start_http_server(port, addr="127.0.0.1", registry=registry)
    while True:
        time.sleep(3600)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_up(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise SystemExit(f"server at {url} did not come up")


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def measure(url: str, scrapes: int, gzip: bool) -> tuple[list[float], int, int]:
    session = requests.Session()
    headers = {"Accept-Encoding": "gzip" if gzip else "identity"}
    times = []
    wire = body = 0
    for i in range(scrapes + 5):
        started = time.perf_counter()
        response = session.get(url, headers=headers, stream=True, timeout=60)
        raw = response.raw.read(decode_content=False)
        elapsed = time.perf_counter() - started
        if i >= 5:  # the first few warm caches and connections
            times.append(elapsed)
        wire = len(raw)
        body = len(response.content) if not raw else len(raw)
    return times, wire, body


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", type=int, default=50_000)
    parser.add_argument("--scrapes", type=int, default=200)
    parser.add_argument("--serve", choices=["exporter", "plain-gauges"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve == "exporter":
        serve_exporter(args.port, args.series)
        return 0
    if args.serve == "plain-gauges":
        serve_plain_gauges(args.port, args.series)
        return 0

    tmp = tempfile.mkdtemp(prefix="bench-scrape-")
    contenders = []
    for kind in ("exporter", "plain-gauges"):
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", kind, "--port", str(port), "--series", str(args.series)]
        )
        contenders.append((kind, proc, f"http://127.0.0.1:{port}/metrics"))
    for _, _, url in contenders:
        wait_up(url)
    # The static file holds exactly the exporter's bytes.
    with open(os.path.join(tmp, "metrics"), "wb") as fh:
        fh.write(requests.get(contenders[0][2], headers={"Accept-Encoding": "identity"}, timeout=60).content)
    port = free_port()
    static = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", tmp],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    contenders.append(("static-file", static, f"http://127.0.0.1:{port}/metrics"))
    wait_up(contenders[-1][2])

    try:
        text_samples = requests.get(contenders[0][2], timeout=60).text.count("\nanthropic_usage_")
        print(
            f"{text_samples} anthropic_usage_* samples, {args.scrapes} scrapes each, one at a time;"
            f" python {sys.version.split()[0]}, {os.cpu_count()} cores, {datetime.now(UTC):%Y-%m-%d}\n"
        )
        print("| server | encoding | p50 ms | p99 ms | bytes on the wire | server RSS MiB |")
        print("|---|---|---:|---:|---:|---:|")
        for kind, proc, url in contenders:
            for gzip in (False, True):
                if gzip and kind == "static-file":
                    continue  # http.server cannot compress
                times, wire, _ = measure(url, args.scrapes, gzip)
                print(
                    f"| {kind} | {'gzip' if gzip else 'identity'} | {percentile(times, 50) * 1000:.1f} |"
                    f" {percentile(times, 99) * 1000:.1f} | {wire:,} | {rss_mib(proc.pid):.0f} |"
                )
    finally:
        for _, proc, _ in contenders:
            proc.terminate()
            proc.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
