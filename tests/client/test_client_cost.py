"""Estimated cost per response: the middleware's counter, the request log and the CLI, against
what the simulator says it served, priced here from the published rates (not from the
middleware's price table, and not from its output)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import sqlite3
import threading
import time
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anthropic  # the test extra installs it
import pytest
from prometheus_client import CollectorRegistry

from exporter.client import Recorder, RequestLog, instrument
from exporter.client.log_cli import main as requests_cli
from exporter.pricing import ModelPrices, Rates, default_table
from exporter.simulator import SimulatorServer
from exporter.simulator.org import UsageEvent

from .fakes import ask, sse

KEY = "sk-ant-api03-test"
COST = "anthropic_client_estimated_cost_usd_total"
MILLION = Decimal(1_000_000)

# The published list prices, USD per million tokens: (uncached input, 5m cache write, 1h cache
# write, cache read, output), transcribed for the models these tests send. Kept apart from the
# package's price table on purpose: a wrong figure there must fail here.
PUBLISHED = {
    "claude-haiku-4-5": ("1", "1.25", "2", "0.10", "5"),
    "claude-sonnet-5": ("2", "2.50", "4", "0.20", "10"),
    "claude-opus-5": ("5", "6.25", "10", "0.50", "25"),
    "claude-haiku-5-5": ("0.10", "0.125", "0.20", "0.01", "0.50"),
}
# Haiku 5.5 bills every token of a request whose prompt exceeds 100,000 tokens at these.
HAIKU_5_5_ABOVE_100K = ("0.50", "0.625", "1.00", "0.05", "2.50")
OPUS_5_FAST = ("10", "12.50", "20", "1.00", "50")
# Data residency: inference_geo "us" costs 1.1x on Claude 4.6 and later (not on Haiku 4.5).
US_MULTIPLIER = {"claude-sonnet-5": "1.1", "claude-opus-5": "1.1", "claude-haiku-5-5": "1.1"}
WEB_SEARCH = Decimal(10) / 1000  # $10 per 1,000 searches


def published_cost(event: UsageEvent) -> Decimal:
    """What the API's list prices charge for one served request."""
    prompt = event.uncached_input_tokens + event.cache_read_input_tokens + event.cache_creation_5m + event.cache_creation_1h
    rates = PUBLISHED[event.model]
    if event.model == "claude-haiku-5-5" and prompt > 100_000:
        rates = HAIKU_5_5_ABOVE_100K
    r_in, r_5m, r_1h, r_read, r_out = (Decimal(r) / MILLION for r in rates)
    tokens = (
        event.uncached_input_tokens * r_in
        + event.cache_creation_5m * r_5m
        + event.cache_creation_1h * r_1h
        + event.cache_read_input_tokens * r_read
        + event.output_tokens * r_out
    )
    if event.inference_geo == "us":
        tokens *= Decimal(US_MULTIPLIER.get(event.model, "1"))
    assert event.service_tier == "standard" and event.speed == "standard"
    return tokens + event.web_search_requests * WEB_SEARCH


class Served:
    """The simulator's own record of every Messages request it served and billed, in order."""

    def __init__(self, sim: SimulatorServer) -> None:
        self.events: list[UsageEvent] = []
        self._lock = threading.Lock()
        record = sim.org.record_message

        def tap(event: UsageEvent) -> None:
            with self._lock:
                self.events.append(event)
            record(event)

        sim.org.record_message = tap  # type: ignore[method-assign]

    def wait_for(self, count: int) -> list[UsageEvent]:
        """The events, once ``count`` arrived (the server records a reply after sending it)."""
        deadline = time.monotonic() + 10
        while len(self.events) < count and time.monotonic() < deadline:
            time.sleep(0.005)
        with self._lock:
            assert len(self.events) == count
            return list(self.events)


def cli(*argv: str) -> str:
    out = io.StringIO()
    assert requests_cli(list(argv), out=out) == 0
    return out.getvalue()


def test_cost_of_each_response_streamed_or_not(
    sim: SimulatorServer, registry: CollectorRegistry, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    served = Served(sim)
    path = tmp_path / "requests.sqlite3"
    log = RequestLog(path)
    client = instrument(anthropic.Anthropic(api_key=KEY, base_url=sim.url, max_retries=0), registry=registry,
                        request_log=log)  # fmt: skip
    long_prompt = "lorem ipsum " * 35_000  # about 105,000 tokens to the simulator: Haiku 5.5's upper band
    calls = [
        ("create", "claude-haiku-4-5", ask("one", cache_ttl="5m")),  # writes the cache
        ("create", "claude-haiku-4-5", ask("two", cache_ttl="5m")),  # reads it
        ("stream", "claude-sonnet-5", ask("three", search=True, geo="us")),  # a search, at the US multiplier
        ("stream", "claude-opus-5", ask("four", cache_ttl="1h")),
        ("create", "claude-haiku-4-5", ask("five", geo="us")),  # no data residency on Haiku 4.5: 1x
        ("create", "claude-haiku-5-5", ask(long_prompt, geo="us")),
        ("stream", "claude-haiku-5-5", ask(long_prompt, cache_ttl="1h")),
        ("stream", "claude-haiku-5-5", ask("six")),  # the lower band
        ("create", "claude-opus-5", ask("seven", geo="global")),
    ]
    request_ids = []
    with caplog.at_level(logging.WARNING, logger="exporter.client.recorder"):
        for kind, model, args in calls:
            if kind == "create":
                raw = client.messages.with_raw_response.create(model=model, **args)
                raw.parse()
                request_ids.append(raw.headers["request-id"])
            else:
                with client.messages.stream(model=model, **args) as stream:
                    stream.get_final_message()
                    request_ids.append(stream.response.headers["request-id"])
        # not priced: a model the table does not know; nothing billed: an error, count_tokens
        unpriced = client.messages.with_raw_response.create(model="claude-unreleased-9", **ask("eight"))
        with pytest.raises(anthropic.RateLimitError):
            client.messages.create(model="claude-opus-5", **ask("x"), extra_headers={"x-simulator-fault": "429"})
        client.messages.count_tokens(model="claude-opus-5", messages=[{"role": "user", "content": "nine"}])
    events = served.wait_for(len(calls) + 1)
    assert [e.model for e in events] == [model for _, model, _ in calls] + ["claude-unreleased-9"]
    priced = events[:-1]
    expected = [published_cost(e) for e in priced]
    # the cases the calls are meant to cover did happen
    assert priced[0].cache_creation_5m > 0 and priced[1].cache_read_input_tokens > 0
    assert priced[2].web_search_requests == 1 and priced[2].inference_geo == "us"
    assert priced[3].cache_creation_1h > 0 and priced[4].inference_geo == "us"
    assert priced[5].uncached_input_tokens > 100_000
    assert priced[6].uncached_input_tokens > 100_000 and priced[6].cache_creation_1h > 0  # a 1h write, upper band
    assert priced[7].uncached_input_tokens < 100_000 and priced[8].inference_geo == "global"

    # the counter: the sum per model of what each response cost
    for model in PUBLISHED:
        total = sum((c for e, c in zip(priced, expected, strict=True) if e.model == model), Decimal(0))
        got = registry.get_sample_value(COST, {"model": model, "service_tier": "standard"})
        assert got == pytest.approx(float(total), rel=1e-12, abs=0), model
    assert registry.get_sample_value(COST, {"model": "claude-unreleased-9", "service_tier": "standard"}) is None
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [
        "no price for a response of model 'claude-unreleased-9' (model 'claude-unreleased-9' is not in the "
        "price table (version 1))"
    ]
    assert registry.get_sample_value("anthropic_client_instrumentation_errors_total", {"stage": "record"}) == 0

    # the request log: each row its own response's cost
    assert log.flush()
    log.close()
    conn = sqlite3.connect(path)
    rows = dict(conn.execute("SELECT request_id, estimated_cost_usd FROM requests").fetchall())
    conn.close()
    for request_id, cost in zip(request_ids, expected, strict=True):
        assert rows[request_id] == pytest.approx(float(cost), rel=1e-12, abs=0)
    assert rows[unpriced.headers["request-id"]] is None
    others = [cost for request_id, cost in rows.items() if request_id not in (*request_ids, unpriced.headers["request-id"])]
    assert others == [0.0, 0.0]  # the 429 and count_tokens: nothing billed

    # the CLI: each row's cost, their total, and the sums by model
    table = cli("--log", str(path), "--limit", "0").splitlines()
    assert "cost_usd" in table[0].split()
    by_id = {line.split()[1]: line for line in table[1:-2]}
    for request_id, cost in zip(request_ids, expected, strict=True):
        # the only cell with six decimals (durations have one)
        assert re.findall(r" (\d+\.\d{6}) ", by_id[request_id]) == [f"{cost:.6f}"]
    assert re.findall(r" (\d+\.\d{6}) ", by_id[unpriced.headers["request-id"]]) == []
    assert table[-2].split()[-1] == f"{sum(expected):.6f}"
    assert table[-2].startswith("total, 12 requests")
    assert table[-1].startswith("requests without an estimated cost: 1 of 12 ")
    grouped = [json.loads(line) for line in cli("--log", str(path), "--group-by", "model", "--format", "jsonl").splitlines()]
    sums = {g["model"]: g for g in grouped}
    for model in PUBLISHED:
        total = sum((c for e, c in zip(priced, expected, strict=True) if e.model == model), Decimal(0))
        assert sums[model]["estimated_cost_usd"] == pytest.approx(float(total), rel=1e-12, abs=0)
        assert sums[model]["output_tokens"] == sum(e.output_tokens for e in priced if e.model == model)
    assert sums["claude-opus-5"]["requests"] == 4 and sums["claude-opus-5"]["errors"] == 1
    assert sums["claude-unreleased-9"]["estimated_cost_usd"] is None
    assert sums["claude-unreleased-9"]["requests_without_cost"] == 1
    assert [g["model"] for g in grouped][-1] == "claude-unreleased-9"  # cost first, unpriced last
    assert [g["estimated_cost_usd"] for g in grouped[:-1]] == sorted((g["estimated_cost_usd"] for g in grouped[:-1]),
                                                                     reverse=True)  # fmt: skip


def test_cost_of_async_responses(sim: SimulatorServer, registry: CollectorRegistry) -> None:
    served = Served(sim)

    async def run() -> None:
        client = instrument(anthropic.AsyncAnthropic(api_key=KEY, base_url=sim.url), registry=registry)
        async with client:
            await client.messages.create(model="claude-sonnet-5", **ask("a", cache_ttl="1h", geo="us"))
            async with client.messages.stream(model="claude-sonnet-5", **ask("b", search=True)) as stream:
                await stream.get_final_message()

    asyncio.run(run())
    events = served.wait_for(2)
    total = sum((published_cost(e) for e in events), Decimal(0))
    got = registry.get_sample_value(COST, {"model": "claude-sonnet-5", "service_tier": "standard"})
    assert got == pytest.approx(float(total), rel=1e-12, abs=0)


# --- usage the simulator does not serve: fast mode, a tier without a price, overrides ----------


def _attempt(recorder: Recorder, usage: dict[str, Any], *, stream: bool = False, model: str = "claude-opus-5") -> None:
    request = SimpleNamespace(url=SimpleNamespace(path="/v1/messages"), headers={},
                              content=json.dumps({"model": model}).encode())  # fmt: skip
    attempt = recorder.start(request)
    assert attempt is not None
    content_type = "text/event-stream" if stream else "application/json"
    attempt.response(SimpleNamespace(status_code=200, headers={"content-type": content_type}))
    if stream:
        start = {k: v for k, v in usage.items() if k != "output_tokens"}
        message = {"type": "message", "model": model, "usage": {**start, "output_tokens": 1}}
        attempt.feed(sse("message_start", {"type": "message_start", "message": message}))
        delta = {"type": "text_delta", "text": "hi"}
        attempt.feed(sse("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}))
        final = {"output_tokens": usage["output_tokens"], "input_tokens": usage["input_tokens"]}
        attempt.feed(sse("message_delta", {"type": "message_delta", "delta": {}, "usage": final}))
    else:
        attempt.feed(json.dumps({"type": "message", "usage": usage}).encode())
    attempt.finish()


def _rates_cost(rates: tuple[str, ...], uncached: int, output: int, multiplier: str = "1") -> float:
    r_in, _, _, _, r_out = (Decimal(r) / MILLION for r in rates)
    return float((uncached * r_in + output * r_out) * Decimal(multiplier))


@pytest.mark.parametrize("stream", [False, True])
def test_fast_mode_and_geo_come_from_the_usage(stream: bool) -> None:
    registry = CollectorRegistry()
    recorder = Recorder(registry)
    _attempt(recorder, {"input_tokens": 1000, "output_tokens": 200, "service_tier": "standard",
                        "speed": "fast", "inference_geo": "us"}, stream=stream)  # fmt: skip
    expected = _rates_cost(OPUS_5_FAST, 1000, 200, "1.1")
    assert registry.get_sample_value(COST, {"model": "claude-opus-5", "service_tier": "standard"}) == pytest.approx(
        expected, rel=1e-12
    )
    # no speed, no geo, no tier (older API versions): priced as standard, 1x
    _attempt(recorder, {"input_tokens": 1000, "output_tokens": 200}, stream=stream)
    got = registry.get_sample_value(COST, {"model": "claude-opus-5", "service_tier": "unknown"})
    assert got == pytest.approx(_rates_cost(PUBLISHED["claude-opus-5"], 1000, 200), rel=1e-12)


def test_what_has_no_price_adds_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    registry = CollectorRegistry()
    log = RequestLog(tmp_path / "requests.sqlite3")
    recorder = Recorder(registry, request_log=log)
    with caplog.at_level(logging.DEBUG, logger="exporter.client.recorder"):
        for _ in range(2):
            _attempt(recorder, {"input_tokens": 10, "output_tokens": 5, "service_tier": "flex"})
        _attempt(recorder, {"input_tokens": 10, "output_tokens": 5, "service_tier": "batch", "speed": "fast"})
        _attempt(recorder, {"input_tokens": 10, "output_tokens": 5, "inference_geo": "mars"})
    for tier in ("flex", "batch", "unknown"):
        assert registry.get_sample_value(COST, {"model": "claude-opus-5", "service_tier": tier}) is None
    assert registry.get_sample_value("anthropic_client_output_tokens_total",
                                      {"model": "claude-opus-5", "service_tier": "flex"}) == 10  # fmt: skip
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3  # once per model and reason; the repeat at DEBUG
    assert "service tier 'flex' has no published price" in warnings[0]
    assert "fast mode is not offered with the batch tier" in warnings[1]
    assert "inference geo 'mars' has no known price" in warnings[2]
    log.close()
    costs = sqlite3.connect(tmp_path / "requests.sqlite3").execute("SELECT estimated_cost_usd FROM requests")
    assert costs.fetchall() == [(None,)] * 4


def test_a_price_table_with_overrides(registry: CollectorRegistry, http_lib: Any) -> None:
    """instrument(prices=...): e.g. the exporter's configured overrides and discount."""
    rates = Rates(Decimal(3), Decimal("3.75"), Decimal(6), Decimal("0.3"), Decimal(15))
    table = default_table().with_overrides([ModelPrices("claude-in-house", "In-house", ((None, rates),))],
                                           Decimal("0.2"))  # fmt: skip
    with instrument(http_lib.Client(), registry=registry, prices=table) as client:
        assert client._transport.recorder.prices is table
    assert Recorder(CollectorRegistry()).prices is default_table()
    direct = Recorder(registry, prices=table)
    _attempt(direct, {"input_tokens": 1_000_000, "output_tokens": 100_000}, model="claude-in-house")
    _attempt(direct, {"input_tokens": 1_000_000, "output_tokens": 0}, model="claude-haiku-4-5")
    assert registry.get_sample_value(COST, {"model": "claude-in-house", "service_tier": "unknown"}) == pytest.approx(
        (3 + 1.5) * 0.8
    )
    assert registry.get_sample_value(COST, {"model": "claude-haiku-4-5", "service_tier": "unknown"}) == pytest.approx(
        0.8
    )
