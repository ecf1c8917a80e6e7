"""The real ``anthropic`` SDK (whichever line is installed), instrumented, against the simulator."""

from __future__ import annotations

import asyncio
import gc
import importlib
import logging
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anthropic  # the test extra installs it
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.exposition import generate_latest

from exporter.client import InstrumentedTransport, RequestLog, client_metrics, instrument
from exporter.client.recorder import BODY_SCAN_LIMIT
from exporter.simulator import SimulatorServer

from .fakes import SDK_HTTP, SDK_MAJOR, ask, collect_garbage_holding

Value = Callable[..., float | None]
KEY = "sk-ant-api03-test"
MODEL = "claude-haiku-4-5"
MODELS = ("claude-haiku-4-5", "claude-sonnet-5", "claude-opus-5")
DURATION = "anthropic_client_request_duration_seconds"
TOKEN_METRICS = {
    "uncached": "anthropic_client_uncached_input_tokens_total",
    "read": "anthropic_client_cache_read_input_tokens_total",
    "output": "anthropic_client_output_tokens_total",
    "web": "anthropic_client_web_search_requests_total",
}


def sync_client(url: str, registry: CollectorRegistry, **kwargs: Any) -> Any:
    kwargs.setdefault("max_retries", 2)
    return instrument(anthropic.Anthropic(api_key=KEY, base_url=url, **kwargs), registry=registry)


class Usage:
    """Token sums the SDK handed the caller, by model and field."""

    def __init__(self) -> None:
        self.sums: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def add(self, model: str, usage: Any) -> None:
        creation = usage.cache_creation
        figures = {
            "uncached": usage.input_tokens,
            "read": usage.cache_read_input_tokens or 0,
            "5m": creation.ephemeral_5m_input_tokens if creation else 0,
            "1h": creation.ephemeral_1h_input_tokens if creation else 0,
            "output": usage.output_tokens,
            "web": usage.server_tool_use.web_search_requests if usage.server_tool_use else 0,
        }
        with self._lock:
            for field, n in figures.items():
                self.sums[model, field] = self.sums.get((model, field), 0) + n

    def assert_recorded(self, value: Value) -> None:
        assert self.sums
        for (model, field), expected in self.sums.items():
            labels = {"model": model, "service_tier": "standard"}
            if field in ("5m", "1h"):
                got = value("anthropic_client_cache_creation_input_tokens_total", **labels, cache_ttl=field)
            else:
                got = value(TOKEN_METRICS[field], **labels)
            assert got == expected, (model, field)


def duration_count(
    value: Value, model: str = MODEL, status: str = "200", stream: str = "false", operation: str = "messages"
) -> float | None:
    return value(f"{DURATION}_count", model=model, operation=operation, status_code=status, stream=stream)


def test_sdk_line_and_attachment(sim: SimulatorServer, registry: CollectorRegistry) -> None:
    client = sync_client(sim.url, registry)
    http_client = client._client
    assert isinstance(http_client, importlib.import_module(SDK_HTTP).Client)
    assert isinstance(http_client._transport, InstrumentedTransport)
    again = instrument(client, registry=registry)  # replaces, does not stack
    assert not isinstance(again._client._transport.transport, InstrumentedTransport)
    assert len([m for m in again.middleware if type(m).__name__ == "_ModelHint"]) == 1


def test_sync_create_and_stream_exact_counts(sim: SimulatorServer, registry: CollectorRegistry, value: Value) -> None:
    client = sync_client(sim.url, registry)
    usage = Usage()
    calls = [
        ("create", "claude-haiku-4-5", ask("one")),
        ("create", "claude-haiku-4-5", ask("two", cache_ttl="5m")),  # writes the cache (5m)
        ("create", "claude-haiku-4-5", ask("three", cache_ttl="5m")),  # reads it
        ("create", "claude-sonnet-5", ask("four", cache_ttl="1h", search=True)),
        ("stream", "claude-sonnet-5", ask("five", search=True)),
        ("stream", "claude-opus-5", ask("six", cache_ttl="1h")),
        ("stream", "claude-opus-5", ask("seven", cache_ttl="1h")),
    ]
    for kind, model, args in calls:
        if kind == "create":
            message = client.messages.create(model=model, **args)
        else:
            with client.messages.stream(model=model, **args) as stream:
                message = stream.get_final_message()
        usage.add(model, message.usage)
    usage.assert_recorded(value)
    assert usage.sums["claude-haiku-4-5", "5m"] > 0 and usage.sums["claude-haiku-4-5", "read"] > 0
    assert usage.sums["claude-opus-5", "1h"] > 0 and usage.sums["claude-sonnet-5", "web"] == 2
    assert duration_count(value, "claude-haiku-4-5") == 3
    assert duration_count(value, "claude-sonnet-5") == 1
    assert duration_count(value, "claude-sonnet-5", stream="true") == 1
    assert duration_count(value, "claude-opus-5", stream="true") == 2
    ttft = "anthropic_client_time_to_first_token_seconds_count"
    assert value(ttft, model="claude-haiku-4-5", operation="messages") is None
    assert value(ttft, model="claude-sonnet-5", operation="messages") == 1
    assert value(ttft, model="claude-opus-5", operation="messages") == 2
    assert value("anthropic_client_in_flight_requests", operation="messages") == 0
    assert value("anthropic_client_ratelimit_limit", model="claude-opus-5", resource="requests") == 4000
    assert (
        value("anthropic_client_ratelimit_reset_timestamp_seconds", model="claude-opus-5", resource="output_tokens")
        > 1.7e9
    )

    tokens = client.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "x"}])
    assert tokens.input_tokens > 0
    assert duration_count(value, operation="count_tokens") == 1
    usage.assert_recorded(value)  # count_tokens bills nothing


def test_async_create_and_stream(sim: SimulatorServer, registry: CollectorRegistry, value: Value) -> None:
    usage = Usage()

    async def run() -> None:
        client = instrument(anthropic.AsyncAnthropic(api_key=KEY, base_url=sim.url), registry=registry)
        async with client:
            results = await asyncio.gather(
                *[client.messages.create(model=MODEL, **ask(f"async {i}")) for i in range(5)]
            )
            for message in results:
                usage.add(MODEL, message.usage)
            async with client.messages.stream(model=MODEL, **ask("async stream")) as stream:
                async for _ in stream.text_stream:
                    pass
                usage.add(MODEL, (await stream.get_final_message()).usage)
            sim.inject("/v1/messages", "529", times=1)
            message = await client.messages.create(model=MODEL, **ask("async retry"))
            usage.add(MODEL, message.usage)

    asyncio.run(run())
    usage.assert_recorded(value)
    assert duration_count(value) == 6
    assert duration_count(value, stream="true") == 1
    assert duration_count(value, status="529") == 1
    assert value("anthropic_client_retries_total", model=MODEL, operation="messages") == 1
    assert value("anthropic_client_time_to_first_token_seconds_count", model=MODEL, operation="messages") == 1


def test_retries_are_attempts(sim: SimulatorServer, registry: CollectorRegistry, value: Value) -> None:
    client = sync_client(sim.url, registry)
    sim.inject("/v1/messages", "429", times=2, retry_after=0.01)
    client.messages.create(model=MODEL, **ask("retry me"))
    assert duration_count(value, status="429") == 2
    assert duration_count(value, status="200") == 1
    assert value("anthropic_client_errors_total", model=MODEL, operation="messages", error_type="rate_limit_error") == 2
    assert value("anthropic_client_retries_total", model=MODEL, operation="messages") == 2

    # a streamed request's error response is closed unread before the retry: typed by status
    sim.inject("/v1/messages", "529", times=1)
    with client.messages.stream(model=MODEL, **ask("stream retry")) as stream:
        stream.get_final_message()
    assert duration_count(value, status="529", stream="true") == 1
    assert duration_count(value, status="200", stream="true") == 1
    assert value("anthropic_client_errors_total", model=MODEL, operation="messages", error_type="overloaded_error") == 1
    assert value("anthropic_client_retries_total", model=MODEL, operation="messages") == 3


def test_errors_by_type(sim: SimulatorServer, registry: CollectorRegistry, value: Value) -> None:
    client = sync_client(sim.url, registry, max_retries=0)
    errors = "anthropic_client_errors_total"
    with pytest.raises(anthropic.InternalServerError):
        client.messages.create(model=MODEL, **ask("a"), extra_headers={"x-simulator-fault": "500"})
    assert value(errors, model=MODEL, operation="messages", error_type="api_error") == 1
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(model=MODEL, max_tokens=0, messages=[{"role": "user", "content": "x"}])
    assert value(errors, model=MODEL, operation="messages", error_type="invalid_request_error") == 1
    assert duration_count(value, status="400") == 1

    # an error event inside a 200 stream
    with (
        pytest.raises(anthropic.APIStatusError),
        client.messages.stream(model=MODEL, **ask("b"), extra_headers={"x-simulator-fault": "stream_error"}) as s,
    ):
        s.get_final_message()
    assert value(errors, model=MODEL, operation="messages", error_type="overloaded_error") == 1
    assert duration_count(value, status="200", stream="true") == 1


def test_connection_failure_and_timeout(
    sim: SimulatorServer, closed_port_url: str, registry: CollectorRegistry, value: Value
) -> None:
    errors = "anthropic_client_errors_total"
    refused = sync_client(closed_port_url, registry, max_retries=1)
    with pytest.raises(anthropic.APIConnectionError) as raised:
        refused.messages.create(model=MODEL, **ask("nobody home"))
    assert not isinstance(raised.value, anthropic.APITimeoutError)
    assert duration_count(value, status="none") == 2
    assert value(errors, model=MODEL, operation="messages", error_type="connection_error") == 2
    assert value("anthropic_client_retries_total", model=MODEL, operation="messages") == 1

    slow = sync_client(sim.url, registry, max_retries=0, timeout=0.3)
    with pytest.raises(anthropic.APITimeoutError):
        slow.messages.create(
            model=MODEL, **ask("slow"), extra_headers={"x-simulator-fault": "slow", "x-simulator-delay": "2"}
        )
    assert value(errors, model=MODEL, operation="messages", error_type="timeout") == 1
    assert duration_count(value, status="none") == 3
    assert value("anthropic_client_in_flight_requests", operation="messages") == 0


def test_many_threads_exact_totals(sim: SimulatorServer, registry: CollectorRegistry, value: Value) -> None:
    client = sync_client(sim.url, registry)
    usage = Usage()
    threads, per_thread = 12, 8

    def work(t: int) -> None:
        for i in range(per_thread):
            model = MODELS[(t + i) % len(MODELS)]
            if i % 2:
                with client.messages.stream(model=model, **ask(f"t{t} i{i}")) as stream:
                    usage.add(model, stream.get_final_message().usage)
            else:
                usage.add(model, client.messages.create(model=model, **ask(f"t{t} i{i}")).usage)

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    usage.assert_recorded(value)
    total = sum(duration_count(value, m, stream=s) or 0 for m in MODELS for s in ("true", "false"))
    assert total == threads * per_thread
    ttft = sum(
        value("anthropic_client_time_to_first_token_seconds_count", model=m, operation="messages") or 0 for m in MODELS
    )
    assert ttft == threads * per_thread / 2
    assert value("anthropic_client_in_flight_requests", operation="messages") == 0


def test_exemplar_in_openmetrics(sim: SimulatorServer, registry: CollectorRegistry) -> None:
    client = sync_client(sim.url, registry)
    message = client.messages.create(model=MODEL, **ask("exemplar"))
    text = generate_latest(registry).decode()
    bucket_lines = [line for line in text.splitlines() if line.startswith(f"{DURATION}_bucket") and "# {" in line]
    assert bucket_lines
    assert f'# {{request_id="{message._request_id}"}}' in bucket_lines[0]


def test_abandoned_stream_collected_under_a_held_lock(
    sim: SimulatorServer, registry: CollectorRegistry, value: Value, tmp_path: Path
) -> None:
    """A stream dropped unread: the 0.x SDK's Stream is a reference cycle, so the garbage
    collector finalizes it (and closes the response) in whatever thread allocates next, maybe
    one holding the request log's lock. Nothing may be recorded there; the next request does."""
    log = RequestLog(tmp_path / "requests.sqlite3")
    client = instrument(anthropic.Anthropic(api_key=KEY, base_url=sim.url), registry=registry, request_log=log)
    gc.disable()
    try:
        stream = client.messages.create(model=MODEL, stream=True, **ask("abandon me"))
        next(iter(stream))
        del stream

        collect_garbage_holding(log._lock)
    finally:
        gc.enable()
    client.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "next"}])
    assert value("anthropic_client_in_flight_requests", operation="messages") == 0
    assert duration_count(value, stream="true") == 1
    log.close()
    rows = sqlite3.connect(tmp_path / "requests.sqlite3").execute("SELECT operation, stream FROM requests")
    assert sorted(rows.fetchall()) == [("count_tokens", 0), ("messages", 1)]


def test_an_abandoned_stream_is_recorded_when_the_client_is_closed(
    sim: SimulatorServer, registry: CollectorRegistry, value: Value, tmp_path: Path
) -> None:
    """No next request: closing the SDK client (its transport) records the dropped stream."""
    log = RequestLog(tmp_path / "requests.sqlite3")
    client = instrument(anthropic.Anthropic(api_key=KEY, base_url=sim.url), registry=registry, request_log=log)
    stream = client.messages.create(model=MODEL, stream=True, **ask("abandon me"))
    next(iter(stream))
    cycle: list[Any] = [stream]
    cycle.append(cycle)  # only the garbage collector frees it (and its response), on either SDK line
    del stream, cycle
    gc.collect()  # finalized during a collection: only queued, as it must be
    assert value("anthropic_client_in_flight_requests", operation="messages") == 1
    assert duration_count(value, stream="true") is None
    client.close()
    assert value("anthropic_client_in_flight_requests", operation="messages") == 0
    assert duration_count(value, stream="true") == 1
    log.close()
    rows = sqlite3.connect(tmp_path / "requests.sqlite3").execute("SELECT model, stream, status_code FROM requests")
    assert rows.fetchall() == [(MODEL, 1, "200")]


def test_request_log_rows_match_request_ids(sim: SimulatorServer, registry: CollectorRegistry, tmp_path: Path) -> None:
    log = RequestLog(tmp_path / "requests.sqlite3")
    client = instrument(
        anthropic.Anthropic(api_key=KEY, base_url=sim.url, max_retries=0), registry=registry, request_log=log
    )
    raw = client.messages.with_raw_response.create(model=MODEL, **ask("log me", cache_ttl="5m"))
    created = raw.parse()
    with client.messages.stream(model="claude-opus-5", **ask("log my stream")) as stream:
        streamed = stream.get_final_message()
        streamed_id = stream.response.headers["request-id"]
    with pytest.raises(anthropic.RateLimitError) as limited:
        client.messages.create(model=MODEL, **ask("x"), extra_headers={"x-simulator-fault": "429"})
    assert log.flush()
    log.close()
    conn = sqlite3.connect(tmp_path / "requests.sqlite3")
    conn.row_factory = sqlite3.Row
    rows = {row["request_id"]: row for row in conn.execute("SELECT * FROM requests")}
    assert set(rows) == {raw.headers["request-id"], streamed_id, limited.value.response.headers["request-id"]}
    first = rows[raw.headers["request-id"]]
    assert (first["model"], first["operation"], first["stream"], first["status_code"]) == (MODEL, "messages", 0, "200")
    assert first["uncached_input_tokens"] == created.usage.input_tokens
    assert first["cache_creation_5m_input_tokens"] == created.usage.cache_creation_input_tokens
    assert first["output_tokens"] == created.usage.output_tokens
    assert first["ttft_ms"] is None and first["duration_ms"] > 0
    assert first["workspace_id"] == raw.headers["anthropic-workspace-id"]
    assert first["service_tier"] == "standard" and first["retry_count"] == 0
    assert first["start_time"].endswith("Z") and len(first["start_time"]) == 24
    second = rows[streamed_id]
    assert second["stream"] == 1 and second["ttft_ms"] is not None
    assert second["output_tokens"] == streamed.usage.output_tokens
    third = rows[limited.value.response.headers["request-id"]]
    assert (third["status_code"], third["error_type"]) == ("429", "rate_limit_error")


def _comparable(message: Any) -> Any:
    data = message.model_dump()
    data.pop("id")
    return data


def test_the_caller_sees_the_same_with_and_without(sim: SimulatorServer, registry: CollectorRegistry) -> None:
    plain = anthropic.Anthropic(api_key=KEY, base_url=sim.url, max_retries=0)
    instrumented = sync_client(sim.url, registry, max_retries=0)
    outcomes = []
    for client in (plain, instrumented):
        created = client.messages.create(model=MODEL, **ask("same"))
        with client.messages.stream(model=MODEL, **ask("same stream")) as stream:
            events = [(event.type, getattr(event, "index", None)) for event in stream]
            final = stream.get_final_message()
        raw = client.messages.with_raw_response.create(model=MODEL, **ask("raw"))
        with pytest.raises(anthropic.APIStatusError) as failed:
            client.messages.create(model=MODEL, **ask("x"), extra_headers={"x-simulator-fault": "529"})
        outcomes.append(
            (
                _comparable(created),
                events,
                _comparable(final),
                raw.http_response.status_code,
                _comparable(raw.parse()),
                type(failed.value),
                failed.value.status_code,
                failed.value.body["error"],  # type: ignore[index]
            )
        )
    assert outcomes[0] == outcomes[1]


def test_recording_failure_is_invisible_to_the_caller(
    sim: SimulatorServer,
    registry: CollectorRegistry,
    value: Value,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    metrics = client_metrics(registry)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("injected")

    monkeypatch.setattr(metrics.request_duration, "labels", broken)
    monkeypatch.setattr(metrics.ratelimit_limit, "labels", broken)
    client = sync_client(sim.url, registry)
    message = client.messages.create(model=MODEL, **ask("still fine"))
    with client.messages.stream(model=MODEL, **ask("still streaming")) as stream:
        text = "".join(stream.text_stream)
    assert message.content[0].text and text
    assert value("anthropic_client_instrumentation_errors_total", stage="record") == 2
    assert value("anthropic_client_instrumentation_errors_total", stage="response") == 2
    assert value("anthropic_client_in_flight_requests", operation="messages") == 0


def test_model_comes_from_the_sdk_even_after_a_megabyte(
    sim: SimulatorServer, registry: CollectorRegistry, value: Value, caplog: pytest.LogCaptureFixture
) -> None:
    """The SDK writes model after messages, beyond the transport's bounded scan of the body:
    the model hint middleware is what labels a large request. It is added to the client passed
    in, so a caller who ignores instrument()'s return value is labelled too."""
    original = anthropic.Anthropic(api_key=KEY, base_url=sim.url, max_retries=0)
    copied_before = original.with_options(timeout=30.0)  # shares the HTTP client, not the hint
    with caplog.at_level(logging.WARNING, logger="exporter.client.recorder"):
        instrumented = instrument(original, registry=registry)  # the return value, ignored or not
        assert instrumented is original
        big = ask("x" * (1024 * 1024))
        original.messages.create(model=MODEL, **big)
        with original.messages.stream(model=MODEL, **big) as stream:
            stream.get_final_message()
        original.with_options(max_retries=1).messages.create(model=MODEL, **big)  # a later copy: labelled
        assert caplog.records == []
        assert duration_count(value) == 2 and duration_count(value, stream="true") == 1
        assert [m for m in original.middleware if type(m).__name__ == "_ModelHint"] != []

        # a copy made before instrument() has no hint: unlabelled, and said so, once
        copied_before.messages.create(model=MODEL, **big)
        copied_before.messages.create(model=MODEL, **big)
    assert duration_count(value, model="unknown") == 2
    assert BODY_SCAN_LIMIT < 1024 * 1024
    assert [r.getMessage() for r in caplog.records] == [
        "a messages request was recorded with model='unknown': no model hint reached the transport "
        "(a client other than the one instrument() returned, e.g. a with_options copy made before "
        f"instrument(), or an SDK without middleware) and the body names no model within its first "
        f"{BODY_SCAN_LIMIT} bytes; its cost cannot be priced either (logged once)"
    ]


def test_an_async_client_gets_the_hint_in_place(sim: SimulatorServer, registry: CollectorRegistry, value: Value) -> None:
    async def run() -> None:
        client = anthropic.AsyncAnthropic(api_key=KEY, base_url=sim.url, max_retries=0)
        instrument(client, registry=registry)  # return value ignored
        async with client:
            await client.messages.create(model=MODEL, **ask("y" * (1024 * 1024)))

    asyncio.run(run())
    assert duration_count(value) == 1 and duration_count(value, model="unknown") is None


def test_two_clients_share_one_registry(sim: SimulatorServer, registry: CollectorRegistry, value: Value) -> None:
    first = sync_client(sim.url, registry)
    second = sync_client(sim.url, registry)
    first.messages.create(model=MODEL, **ask("one"))
    second.messages.create(model=MODEL, **ask("two"))
    assert duration_count(value) == 2


def test_sdk_specific_http_library() -> None:
    """The installed line uses the library the docs say (httpx2 from 1.0, httpx before)."""
    module = importlib.import_module(SDK_HTTP)
    client = anthropic.Anthropic(api_key=KEY)
    assert isinstance(client._client, module.Client)
    assert (SDK_MAJOR >= 1) == (SDK_HTTP == "httpx2")
