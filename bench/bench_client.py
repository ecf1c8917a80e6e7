"""Added time per request of the client middleware, and of OpenTelemetry's, over a plain SDK client.

Run by hand, with whichever SDK line is installed (2.x uses httpx2, 0.x httpx):

    python bench/bench_client.py                 # prints a markdown table
    python bench/bench_client.py --requests 500  # fewer small requests (quicker, noisier)

A local server in another process answers ``POST /v1/messages`` (a JSON message, or an SSE stream
of 24 events) and reads the whole body. Each configuration gets its own SDK client; the
configurations take turns in blocks of requests, so drift (CPU frequency, the server warming up)
falls on all alike. "Added" is the configuration's median (p99) minus the plain client's.

Configurations, where installed (OpenTelemetry's are not project dependencies: ``pip install
opentelemetry-sdk opentelemetry-instrumentation-httpx opentelemetry-instrumentation-anthropic``):

- ``exporter.client.instrument``: this project's middleware.
- ``otel-httpx``: ``HTTPXClientInstrumentor.instrument_client`` on the SDK's HTTP client, or
  ``HTTPX2ClientInstrumentor`` for httpx2 (opentelemetry-instrumentation-httpx 0.66 has both;
  ``HTTPXClientInstrumentor`` on an httpx2 client makes every request fail).
- ``otel-anthropic``: ``AnthropicInstrumentor`` (openllmetry), which wraps the SDK's methods
  globally; switched on only for its own blocks. Its default records prompt and completion
  content on the span; ``otel-anthropic (no content)`` sets ``TRACELOOP_TRACE_CONTENT=false``.
- ``sdk-otel-tracing``: the 2.x SDK's own ``open_telemetry`` tracing (a span per call).

Spans go to a BatchSpanProcessor with an exporter that discards them, metrics to an in-memory
reader: the cost on the request path is counted, shipping them elsewhere is not.

Last, the estimated-cost step alone (``price_usage`` on the bench's usage, as the recorder runs it
once per response when the attempt ends), timed in-process without HTTP.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import multiprocessing
import os
import platform
import socket
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anthropic
from prometheus_client import CollectorRegistry

from exporter.client import instrument

MODEL = "claude-haiku-4-5"
SDK_MAJOR = int(anthropic.__version__.split(".")[0])
HTTP_LIB = "httpx2" if SDK_MAJOR >= 1 else "httpx"

# --- the local server ---------------------------------------------------------------------------

_USAGE = {
    "input_tokens": 12,
    "cache_read_input_tokens": 0,
    "cache_creation_input_tokens": 0,
    "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
    "output_tokens": 20,
    "service_tier": "standard",
}
_MESSAGE = {
    "id": "msg_bench",
    "type": "message",
    "role": "assistant",
    "model": MODEL,
    "content": [{"type": "text", "text": "word " * 20}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": _USAGE,
}


_RATELIMITS = {
    f"anthropic-ratelimit-{resource}-{kind}": value
    for resource in ("requests", "tokens", "input-tokens", "output-tokens")
    for kind, value in (("limit", "4000"), ("remaining", "3999"), ("reset", "2030-01-01T00:00:00Z"))
}


def _sse(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


def _stream_body() -> bytes:
    start = {**_MESSAGE, "content": [], "stop_reason": None, "usage": {**_USAGE, "output_tokens": 1}}
    events = [
        _sse("message_start", {"type": "message_start", "message": start}),
        _sse(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
        _sse("ping", {"type": "ping"}),
    ]
    for _ in range(20):
        delta = {"type": "text_delta", "text": "word "}
        events.append(_sse("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}))
    events += [
        _sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
        _sse(
            "message_delta",
            {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 20}},
        ),
        _sse("message_stop", {"type": "message_stop"}),
    ]
    return b"".join(events)


def _serve(port_queue: Any) -> None:
    _pin(-1)  # the last CPU; the client keeps the others
    plain = json.dumps(_MESSAGE).encode()
    stream = _stream_body()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def setup(self) -> None:
            super().setup()  # no Nagle: headers and body go out at once, no delayed-ACK stall
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            streamed = b'"stream":true' in body[-200:] or b'"stream": true' in body[-200:]
            payload = stream if streamed else plain
            self.send_response(200)
            self.send_header("content-type", "text/event-stream" if streamed else "application/json")
            self.send_header("request-id", "req_bench")
            self.send_header("anthropic-workspace-id", "wrkspc_bench")
            for name, value in _RATELIMITS.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    port_queue.put(server.server_address[1])
    server.serve_forever()


def _pin(cpu: int) -> None:
    """Keep server and client off each other's CPU, where the OS lets us (less noise in the p99)."""
    with contextlib.suppress(AttributeError, OSError):
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) > 1:
            os.sched_setaffinity(0, {cpus[cpu]} if cpu < 0 else set(cpus[:-1]))


@contextlib.contextmanager
def local_server() -> Iterator[str]:
    ctx = multiprocessing.get_context("spawn")
    ports = ctx.Queue()
    proc = ctx.Process(target=_serve, args=(ports,), daemon=True)
    proc.start()
    try:
        yield f"http://127.0.0.1:{ports.get(timeout=30)}"
    finally:
        proc.terminate()
        proc.join()


# --- configurations -----------------------------------------------------------------------------


@dataclass
class Config:
    name: str
    client: Any = None
    toggle: Callable[[bool], None] | None = None  # switches a global instrumentation on / off
    note: str = ""
    samples: dict[str, list[float]] = field(default_factory=dict)


ClientFactory = Callable[..., Any]


def server_clients(url: str) -> ClientFactory:
    """SDK clients of the local server."""

    def make(**kwargs: Any) -> Any:
        if SDK_MAJOR >= 1:  # no SDK tracing unless a configuration asks for it
            kwargs.setdefault("open_telemetry", {"traces": False})
        return anthropic.Anthropic(api_key="sk-ant-api03-bench", base_url=url, max_retries=0, **kwargs)

    return make


def in_process_clients() -> ClientFactory:
    """SDK clients whose transport answers in-process, as the server would: no sockets, less noise."""
    lib = importlib.import_module(HTTP_LIB)
    plain, stream = json.dumps(_MESSAGE).encode(), _stream_body()
    headers = {"request-id": "req_bench", "anthropic-workspace-id": "wrkspc_bench", **_RATELIMITS}

    class Answer(lib.BaseTransport):  # type: ignore[misc,name-defined]
        def handle_request(self, request: Any) -> Any:
            body = request.read()
            streamed = b'"stream":true' in body[-200:]
            content_type = "text/event-stream" if streamed else "application/json"
            payload = stream if streamed else plain
            return lib.Response(200, headers={**headers, "content-type": content_type}, stream=lib.ByteStream(payload))

    def make(**kwargs: Any) -> Any:
        if SDK_MAJOR >= 1:
            kwargs.setdefault("open_telemetry", {"traces": False})
        http_client = anthropic.DefaultHttpxClient(transport=Answer())
        return anthropic.Anthropic(api_key="sk-ant-api03-bench", base_url="http://bench.local", max_retries=0,
                                   http_client=http_client, **kwargs)  # fmt: skip

    return make


def _otel() -> tuple[Any, Any] | None:
    """A tracer provider that drops its spans and a meter provider read in memory, if installed."""
    try:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
    except ImportError:
        return None

    class Discard(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(Discard()))
    return tracer_provider, MeterProvider(metric_readers=[InMemoryMetricReader()])


def configurations(make: ClientFactory, otel: tuple[Any, Any] | None) -> tuple[list[Config], list[Config]]:
    """(the configurations to measure, the ones that do not apply, with why)."""
    configs = [Config("plain SDK client", make())]
    configs.append(Config("exporter.client.instrument", instrument(make(), registry=CollectorRegistry())))
    skipped: list[Config] = []
    if otel is None:
        skipped.append(Config("OpenTelemetry", note="opentelemetry-sdk is not installed"))
        return configs, skipped
    tracer_provider, meter_provider = otel

    try:
        otel_httpx = importlib.import_module("opentelemetry.instrumentation.httpx")
        instrumentor_name = "HTTPX2ClientInstrumentor" if HTTP_LIB == "httpx2" else "HTTPXClientInstrumentor"
        instrumentor_class = getattr(otel_httpx, instrumentor_name)
    except (ImportError, AttributeError):
        skipped.append(Config("otel-httpx", note=f"no opentelemetry-instrumentation-httpx for {HTTP_LIB} installed"))
    else:
        client = make()
        instrumentor_class.instrument_client(client._client, tracer_provider=tracer_provider,
                                             meter_provider=meter_provider)  # fmt: skip
        try:
            client.messages.create(model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "probe"}])
        except Exception as exc:
            skipped.append(Config("otel-httpx", note=f"does not instrument {HTTP_LIB}: every request fails ({exc!r} "
                                  f"caused by {exc.__cause__!r})"))  # fmt: skip
        else:
            configs.append(Config(f"otel-httpx ({instrumentor_name})", client))

    try:
        from opentelemetry.instrumentation.anthropic import AnthropicInstrumentor
    except ImportError:
        skipped.append(Config("otel-anthropic", note="opentelemetry-instrumentation-anthropic is not installed"))
    else:
        instrumentor = AnthropicInstrumentor()

        def switch(content: bool) -> Callable[[bool], None]:
            def toggle(on: bool) -> None:
                if on:
                    os.environ["TRACELOOP_TRACE_CONTENT"] = "true" if content else "false"
                    instrumentor.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
                else:
                    instrumentor.uninstrument()

            return toggle

        configs.append(Config("otel-anthropic", make(), switch(True)))
        configs.append(Config("otel-anthropic (no content)", make(), switch(False)))

    if SDK_MAJOR >= 1:
        configs.append(Config("sdk-otel-tracing", make(open_telemetry={"tracer_provider": tracer_provider})))
    else:
        skipped.append(Config("sdk-otel-tracing", note="the 0.x SDK has no built-in tracing"))
    return configs, skipped


# --- measuring ----------------------------------------------------------------------------------


def _request(client: Any, content: str, stream: bool) -> None:
    messages = [{"role": "user", "content": content}]
    if stream:
        for _ in client.messages.create(model=MODEL, max_tokens=64, messages=messages, stream=True):
            pass
    else:
        client.messages.create(model=MODEL, max_tokens=64, messages=messages)


def measure(configs: list[Config], scenario: str, content: str, stream: bool, requests: int, block: int) -> None:
    for config in configs:  # warm up: connections, caches, lazy imports
        if config.toggle:
            config.toggle(True)
        for _ in range(5):
            _request(config.client, content, stream)
        if config.toggle:
            config.toggle(False)
        config.samples[scenario] = []
    done = 0
    while done < requests:
        n = min(block, requests - done)
        for config in configs:
            if config.toggle:
                config.toggle(True)
            samples = config.samples[scenario]
            for _ in range(n):
                start = time.perf_counter()
                _request(config.client, content, stream)
                samples.append(time.perf_counter() - start)
            if config.toggle:
                config.toggle(False)
        done += n


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def table(configs: list[Config], scenarios: list[str]) -> str:
    base = configs[0]
    lines = [
        "| configuration | " + " | ".join(scenarios) + " |",
        "| --- | " + " | ".join("---" for _ in scenarios) + " |",
    ]
    for config in configs:
        cells = []
        for scenario in scenarios:
            samples, reference = config.samples[scenario], base.samples[scenario]
            median, p99 = statistics.median(samples), percentile(samples, 0.99)
            if config is base:
                cells.append(f"{median * 1e3:.2f} ms / {p99 * 1e3:.2f} ms")
            else:
                added_median = (median - statistics.median(reference)) * 1e6
                added_p99 = (p99 - percentile(reference, 0.99)) * 1e6
                cells.append(f"{added_median:+.0f} µs / {added_p99:+.0f} µs")
        lines.append(f"| {config.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def pricing_alone(blocks: int = 200, per_block: int = 500) -> tuple[float, float] | None:
    """(median, minimum) µs of pricing one response's usage, as the recorder does, if available."""
    try:
        from exporter.client.recorder import price_usage, token_figures
        from exporter.pricing import default_table
    except ImportError:  # a tree from before the estimated cost
        return None
    table, usage = default_table(), {**_USAGE, "inference_geo": "global"}
    at = time.time()
    per_call = []
    for _ in range(blocks):
        start = time.perf_counter()
        for _ in range(per_block):
            price_usage(table, MODEL, usage, token_figures(usage), at)
        per_call.append((time.perf_counter() - start) / per_block * 1e6)
    return statistics.median(per_call), min(per_call)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="small requests per configuration and mode")
    parser.add_argument("--large-requests", type=int, default=200, help="1 MB requests per configuration and mode")
    parser.add_argument("--block", type=int, default=5, help="requests in a row before the next configuration")
    args = parser.parse_args(argv)

    small, large = "Hello, Claude.", "x" * (1024 * 1024)
    scenarios = [
        ("small", small, False, args.requests),
        ("small, stream", small, True, args.requests),
        ("1 MB body", large, False, args.large_requests),
        ("1 MB body, stream", large, True, args.large_requests),
    ]
    otel = _otel()
    results = []
    with local_server() as url:
        _pin(0)
        for title, make in (("local server", server_clients(url)), ("in-process transport", in_process_clients())):
            configs, skipped = configurations(make, otel)
            for name, content, stream, n in scenarios:
                print(f"{title}: measuring {name} ({n} requests per configuration)...", file=sys.stderr)
                measure(configs, name, content, stream, n, args.block)
            results.append((title, configs, skipped))

    versions = [f"anthropic {anthropic.__version__} ({HTTP_LIB} {importlib.import_module(HTTP_LIB).__version__})"]
    with contextlib.suppress(Exception):
        from importlib.metadata import version

        versions += [f"{pkg} {version(pkg)}" for pkg in ("opentelemetry-sdk", "opentelemetry-instrumentation-httpx",
                                                         "opentelemetry-instrumentation-anthropic")]  # fmt: skip
    print(f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs; " + ", ".join(versions))
    print()
    print("First row: the plain SDK client's median / p99 per request. Other rows: time added to the median / p99.")
    for title, configs, skipped in results:
        print(f"\n### {title}\n")
        print(table(configs, [name for name, *_ in scenarios]))
        for config in skipped:
            print(f"\n- {config.name}: not measured, {config.note}")
    pricing = pricing_alone()
    if pricing is not None:
        print(f"\nPricing one response's usage (token figures and price_usage, no HTTP): median {pricing[0]:.2f} µs, "
              f"minimum {pricing[1]:.2f} µs per response.")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
