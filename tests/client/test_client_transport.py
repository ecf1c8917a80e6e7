"""The transport wrappers with plain httpx and httpx2 clients, sync and async, over real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import gzip
import importlib
import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from exporter.client import AsyncInstrumentedTransport, InstrumentedTransport, Recorder, RequestLog, instrument
from exporter.client import recorder as recorder_module

from .fakes import FAKE_USAGE, FakeAPI, Reply, collect_garbage_holding, compressed_frames, fake_stream_frames

Value = Callable[..., float | None]
DURATION = "anthropic_client_request_duration_seconds"


@pytest.fixture(params=["httpx", "httpx2"])
def lib(request: pytest.FixtureRequest) -> Any:
    """Both HTTP libraries; CI installs httpx2 beside the 0.x SDK too, so both always run."""
    return importlib.import_module(request.param)


def client_for(lib: Any, registry: CollectorRegistry, **kwargs: Any) -> Any:
    transport = InstrumentedTransport(lib.HTTPTransport(), Recorder(registry))
    return lib.Client(transport=transport, **kwargs)


def async_client_for(lib: Any, registry: CollectorRegistry, **kwargs: Any) -> Any:
    transport = AsyncInstrumentedTransport(lib.AsyncHTTPTransport(), Recorder(registry))
    return lib.AsyncClient(transport=transport, **kwargs)


BODY = {"model": "claude-plain", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
STREAM_BODY = {**BODY, "stream": True}


def count(
    value: Value,
    *,
    model: str = "claude-plain",
    operation: str = "messages",
    status: str = "200",
    stream: str = "false",
) -> float | None:
    return value(f"{DURATION}_count", model=model, operation=operation, status_code=status, stream=stream)


def assert_fake_usage(value: Value, model: str = "claude-plain", times: int = 1) -> None:
    labels = {"model": model, "service_tier": "standard"}
    assert value("anthropic_client_uncached_input_tokens_total", **labels) == 10 * times
    assert value("anthropic_client_cache_read_input_tokens_total", **labels) == 2 * times
    assert value("anthropic_client_cache_creation_input_tokens_total", **labels, cache_ttl="5m") == 3 * times
    assert value("anthropic_client_cache_creation_input_tokens_total", **labels, cache_ttl="1h") == 4 * times
    assert value("anthropic_client_output_tokens_total", **labels) == 5 * times
    assert value("anthropic_client_web_search_requests_total", **labels) == 1 * times


def test_non_streaming(lib: Any, fake_api: FakeAPI, registry: CollectorRegistry, value: Value) -> None:
    with client_for(lib, registry) as client:
        response = client.post(fake_api.url + "/v1/messages", json=BODY)
    assert response.json()["usage"] == FAKE_USAGE
    assert count(value) == 1
    assert_fake_usage(value)
    assert (
        value("anthropic_client_time_to_first_token_seconds_count", model="claude-plain", operation="messages") is None
    )
    assert value("anthropic_client_in_flight_requests", operation="messages") == 0
    labels = {"model": "claude-plain"}
    assert value("anthropic_client_ratelimit_limit", **labels, resource="requests") == 50
    assert value("anthropic_client_ratelimit_remaining", **labels, resource="requests") == 49
    assert value("anthropic_client_ratelimit_remaining", **labels, resource="input_tokens") == 29000
    assert value("anthropic_client_ratelimit_reset_timestamp_seconds", **labels, resource="requests") == 1893456000.0


def test_stream_is_seen_as_it_is_read(lib: Any, fake_api: FakeAPI, registry: CollectorRegistry, value: Value) -> None:
    frames = fake_stream_frames("claude-plain")
    fake_api.script(Reply(200, {"content-type": "text/event-stream"}, frames, frame_delay=0.05))
    with client_for(lib, registry) as client:
        started = time.perf_counter()
        with client.stream("POST", fake_api.url + "/v1/messages", json=STREAM_BODY) as response:
            chunks = response.iter_raw()
            first = next(chunks)
            first_at = time.perf_counter() - started
            # not buffered: the caller has bytes long before the stream ends, while in flight
            assert first_at < 0.05 * len(frames) / 2
            assert value("anthropic_client_in_flight_requests", operation="messages") == 1
            body = first + b"".join(chunks)
    assert body == b"".join(frames)  # the caller's bytes, untouched
    assert count(value, stream="true") == 1
    assert_fake_usage(value)
    ttft = value("anthropic_client_time_to_first_token_seconds_sum", model="claude-plain", operation="messages")
    duration = value(f"{DURATION}_sum", model="claude-plain", operation="messages", status_code="200", stream="true")
    assert 0.05 * 4 <= ttft < duration  # the first delta is the 4th frame
    assert duration >= 0.05 * len(frames)
    assert value("anthropic_client_in_flight_requests", operation="messages") == 0


def test_stream_closed_early_records_what_it_saw(
    lib: Any, fake_api: FakeAPI, registry: CollectorRegistry, value: Value
) -> None:
    fake_api.script(
        Reply(200, {"content-type": "text/event-stream"}, fake_stream_frames("claude-plain"), frame_delay=0.02)
    )
    with (
        client_for(lib, registry) as client,
        client.stream("POST", fake_api.url + "/v1/messages", json=STREAM_BODY) as response,
    ):
        for line in response.iter_lines():
            if line.startswith("event: content_block_delta"):
                break  # the caller has had enough
    assert count(value, stream="true") == 1
    labels = {"model": "claude-plain", "service_tier": "standard"}
    assert value("anthropic_client_uncached_input_tokens_total", **labels) == 10
    assert value("anthropic_client_output_tokens_total", **labels) == 1  # message_start's
    assert (
        value(
            "anthropic_client_errors_total", model="claude-plain", operation="messages", error_type="connection_error"
        )
        is None
    )
    assert value("anthropic_client_in_flight_requests", operation="messages") == 0


def test_stream_dropped_unclosed_is_recorded_on_the_next_request(
    lib: Any, fake_api: FakeAPI, registry: CollectorRegistry, value: Value
) -> None:
    with client_for(lib, registry) as client:
        request = client.build_request("POST", fake_api.url + "/v1/messages", json=STREAM_BODY)
        response = client.send(request, stream=True)
        chunks = response.iter_raw()
        next(chunks)
        assert value("anthropic_client_in_flight_requests", operation="messages") == 1
        del chunks, response  # (httpx2 closes a response whose iterator is collected)
        gc.collect()
        client.get(fake_api.url + "/v1/models")  # the next request records the dropped one
        assert value("anthropic_client_in_flight_requests", operation="messages") == 0
        assert count(value, stream="true") == 1


def test_leaving_the_client_ends_a_stream_still_open(
    lib: Any, fake_api: FakeAPI, registry: CollectorRegistry, value: Value
) -> None:
    """``with client:`` closes the connections, an open stream's too: the attempt ends there."""
    frames = fake_stream_frames("claude-plain")
    fake_api.script(Reply(200, {"content-type": "text/event-stream"}, frames, frame_delay=0.02))
    with client_for(lib, registry) as client:
        response = client.send(client.build_request("POST", fake_api.url + "/v1/messages", json=STREAM_BODY), stream=True)
        chunks = response.iter_raw()
        next(chunks)
        assert value("anthropic_client_in_flight_requests", operation="messages") == 1
    assert value("anthropic_client_in_flight_requests", operation="messages") == 0
    assert count(value, stream="true") == 1
    with contextlib.suppress(lib.TransportError):  # its connection is gone; recorded already
        list(chunks)
    assert count(value, stream="true") == 1
    assert not [s for m in registry.collect() if m.name == "anthropic_client_errors" for s in m.samples]


def test_leaving_an_async_client_ends_a_stream_still_open(
    lib: Any, fake_api: FakeAPI, registry: CollectorRegistry, value: Value
) -> None:
    frames = fake_stream_frames("claude-plain")
    fake_api.script(Reply(200, {"content-type": "text/event-stream"}, frames, frame_delay=0.02))

    async def run() -> None:
        async with async_client_for(lib, registry) as client:
            request = client.build_request("POST", fake_api.url + "/v1/messages", json=STREAM_BODY)
            response = await client.send(request, stream=True)
            chunks = response.aiter_raw()
            await anext(chunks)
            assert value("anthropic_client_in_flight_requests", operation="messages") == 1
        # checked before the event loop's shutdown closes the body's generators
        assert value("anthropic_client_in_flight_requests", operation="messages") == 0
        assert count(value, stream="true") == 1
        with contextlib.suppress(lib.TransportError):
            async for _ in chunks:
                pass
        assert count(value, stream="true") == 1
        await response.aclose()

    asyncio.run(run())
    assert not [s for m in registry.collect() if m.name == "anthropic_client_errors" for s in m.samples]


def test_a_stream_dropped_before_leaving_the_client_is_recorded_on_exit(
    lib: Any, fake_api: FakeAPI, registry: CollectorRegistry, value: Value
) -> None:
    with client_for(lib, registry) as client:
        request = client.build_request("POST", fake_api.url + "/v1/messages", json=STREAM_BODY)
        response = client.send(request, stream=True)
        chunks = response.iter_raw()
        next(chunks)
        del chunks, response
        gc.collect()
    assert value("anthropic_client_in_flight_requests", operation="messages") == 0
    assert count(value, stream="true") == 1


def test_stream_collected_under_a_held_lock_does_not_deadlock(
    lib: Any, fake_api: FakeAPI, registry: CollectorRegistry, value: Value, tmp_path: Path
) -> None:
    """The garbage collector finalizes a dropped response in whatever thread allocates, maybe
    one inside RequestLog.submit; recording there would wait forever on the lock it holds."""
    log = RequestLog(tmp_path / "requests.sqlite3")
    recorder = Recorder(registry, request_log=log)
    with lib.Client(transport=InstrumentedTransport(lib.HTTPTransport(), recorder)) as client:
        request = client.build_request("POST", fake_api.url + "/v1/messages", json=STREAM_BODY)
        response = client.send(request, stream=True)
        chunks = response.iter_raw()
        next(chunks)
        cycle: list[Any] = [response, chunks]
        cycle.append(cycle)  # only the cycle collector frees it, as the 0.x SDK's streams
        gc.disable()
        try:
            del response, chunks, cycle
            collect_garbage_holding(log._lock)
        finally:
            gc.enable()
        assert value("anthropic_client_in_flight_requests", operation="messages") == 1  # not yet
        client.get(fake_api.url + "/v1/models")
    assert value("anthropic_client_in_flight_requests", operation="messages") == 0
    assert count(value, stream="true") == 1
    log.close()
    rows = sqlite3.connect(tmp_path / "requests.sqlite3").execute("SELECT operation, stream FROM requests")
    assert sorted(rows.fetchall()) == [("messages", 1), ("models", 0)]


def test_cancelled_request_records_its_duration_but_no_error(
    lib: Any, fake_api: FakeAPI, registry: CollectorRegistry, value: Value
) -> None:
    fake_api.script(Reply.json(200, {}, delay=1.0))

    async def run() -> None:
        async with async_client_for(lib, registry) as client:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(client.post(fake_api.url + "/v1/messages", json=BODY), 0.1)

    asyncio.run(run())
    assert count(value, status="none") == 1
    errors = [s for m in registry.collect() if m.name == "anthropic_client_errors" for s in m.samples]
    assert errors == []
    assert value("anthropic_client_in_flight_requests", operation="messages") == 0


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_compressed_responses_are_read_decompressed(
    lib: Any, fake_api: FakeAPI, registry: CollectorRegistry, value: Value, encoding: str
) -> None:
    message = json.dumps({"type": "message", "usage": FAKE_USAGE}).encode()
    # 503 is not in the status table: only the body can say overloaded_error
    error = json.dumps({"type": "error", "error": {"type": "overloaded_error", "message": "x"}}).encode()
    frames = fake_stream_frames("claude-plain")
    zipped = {"content-encoding": encoding}
    fake_api.script(
        Reply(200, {"content-type": "application/json", **zipped}, compressed_frames([message], encoding)),
        Reply(503, {"content-type": "application/json", **zipped}, compressed_frames([error], encoding)),
        Reply(200, {"content-type": "text/event-stream", **zipped}, compressed_frames(frames, encoding)),
    )
    with client_for(lib, registry) as client:
        assert client.post(fake_api.url + "/v1/messages", json=BODY).json()["usage"] == FAKE_USAGE
        assert client.post(fake_api.url + "/v1/messages", json=BODY).status_code == 503
        streamed = client.post(fake_api.url + "/v1/messages", json=STREAM_BODY).content
    assert streamed == b"".join(frames)  # the caller still decodes the untouched bytes
    assert_fake_usage(value, times=2)
    labels = {"model": "claude-plain", "operation": "messages"}
    assert value("anthropic_client_errors_total", **labels, error_type="overloaded_error") == 1
    assert value("anthropic_client_errors_total", **labels, error_type="unknown") is None
    assert value("anthropic_client_time_to_first_token_seconds_count", **labels) == 1
    assert value("anthropic_client_instrumentation_errors_total", stage="decode") == 0


def test_an_encoding_that_cannot_be_decoded_falls_back_and_is_counted_once(
    lib: Any, fake_api: FakeAPI, registry: CollectorRegistry, value: Value
) -> None:
    opaque = [b"\x1b\x00\x01 not json", b"\x02 more", b"\x03 and more"]  # as br would look
    fake_api.script(
        Reply(529, {"content-type": "application/json", "content-encoding": "br"}, opaque),
        Reply(200, {"content-type": "text/event-stream", "content-encoding": "br"}, opaque),
    )
    with client_for(lib, registry) as client:
        for body in (BODY, STREAM_BODY):
            with client.stream("POST", fake_api.url + "/v1/messages", json=body) as response:
                assert b"".join(response.iter_raw()) == b"".join(opaque)
    labels = {"model": "claude-plain", "operation": "messages"}
    assert value("anthropic_client_errors_total", **labels, error_type="overloaded_error") == 1  # by status
    assert value("anthropic_client_time_to_first_token_seconds_count", **labels) is None
    assert value("anthropic_client_output_tokens_total", model="claude-plain", service_tier="unknown") is None
    assert count(value, stream="true") == 1
    assert value("anthropic_client_instrumentation_errors_total", stage="decode") == 2  # one per attempt


def test_error_event_inside_a_200_stream(
    lib: Any, fake_api: FakeAPI, registry: CollectorRegistry, value: Value
) -> None:
    fake_api.script(Reply(200, {"content-type": "text/event-stream"}, fake_stream_frames("claude-plain", fail=True)))
    with client_for(lib, registry) as client:
        client.post(fake_api.url + "/v1/messages", json=STREAM_BODY)
    assert count(value, stream="true") == 1
    assert (
        value(
            "anthropic_client_errors_total", model="claude-plain", operation="messages", error_type="overloaded_error"
        )
        == 1
    )


def test_error_body_type_and_untouched_bytes(
    lib: Any, fake_api: FakeAPI, registry: CollectorRegistry, value: Value
) -> None:
    fake_api.script(
        Reply.error(429, "rate_limit_error", headers={"retry-after": "1"}), Reply.error(400, "invalid_request_error")
    )
    with client_for(lib, registry) as client:
        first = client.post(fake_api.url + "/v1/messages", json=BODY)
        with client.stream("POST", fake_api.url + "/v1/messages", json=STREAM_BODY) as second:
            second_body = second.read()
    assert first.status_code == 429
    assert first.json() == {"type": "error", "error": {"type": "rate_limit_error", "message": "rate_limit_error"}}
    assert json.loads(second_body)["error"]["type"] == "invalid_request_error"
    errors = "anthropic_client_errors_total"
    assert value(errors, model="claude-plain", operation="messages", error_type="rate_limit_error") == 1
    assert value(errors, model="claude-plain", operation="messages", error_type="invalid_request_error") == 1
    assert count(value, status="429") == 1
    assert count(value, status="400", stream="true") == 1


def test_error_body_never_read_is_typed_by_status(
    lib: Any, fake_api: FakeAPI, registry: CollectorRegistry, value: Value
) -> None:
    # what the SDK does before retrying a streamed request: close the error response unread
    fake_api.script(Reply.error(529, "overloaded_error"))
    with (
        client_for(lib, registry) as client,
        client.stream("POST", fake_api.url + "/v1/messages", json=STREAM_BODY),
    ):
        pass
    assert (
        value(
            "anthropic_client_errors_total", model="claude-plain", operation="messages", error_type="overloaded_error"
        )
        == 1
    )


def test_connection_refused(lib: Any, closed_port_url: str, registry: CollectorRegistry, value: Value) -> None:
    with client_for(lib, registry) as client, pytest.raises(lib.ConnectError):
        client.post(closed_port_url + "/v1/messages", json=BODY)
    assert count(value, status="none") == 1
    assert (
        value(
            "anthropic_client_errors_total", model="claude-plain", operation="messages", error_type="connection_error"
        )
        == 1
    )
    assert value("anthropic_client_in_flight_requests", operation="messages") == 0


def test_timeout(lib: Any, fake_api: FakeAPI, registry: CollectorRegistry, value: Value) -> None:
    fake_api.script(Reply.json(200, {}, delay=1.0))
    with client_for(lib, registry, timeout=0.2) as client, pytest.raises(lib.ReadTimeout):
        client.post(fake_api.url + "/v1/messages", json=BODY)
    assert count(value, status="none") == 1
    assert value("anthropic_client_errors_total", model="claude-plain", operation="messages", error_type="timeout") == 1


def test_stream_broken_off_by_the_server(
    lib: Any, fake_api: FakeAPI, registry: CollectorRegistry, value: Value
) -> None:
    fake_api.script(
        Reply(200, {"content-type": "text/event-stream"}, fake_stream_frames("claude-plain"), abort_after=4)
    )
    with (
        client_for(lib, registry) as client,
        pytest.raises(lib.TransportError),
        client.stream("POST", fake_api.url + "/v1/messages", json=STREAM_BODY) as response,
    ):
        response.read()
    assert count(value, stream="true") == 1
    assert (
        value(
            "anthropic_client_errors_total", model="claude-plain", operation="messages", error_type="connection_error"
        )
        == 1
    )
    assert value("anthropic_client_time_to_first_token_seconds_count", model="claude-plain", operation="messages") == 1


def test_async_client(lib: Any, fake_api: FakeAPI, registry: CollectorRegistry, value: Value) -> None:
    async def run() -> tuple[bytes, bytes]:
        async with async_client_for(lib, registry) as client:
            plain = await client.post(fake_api.url + "/v1/messages", json=BODY)
            async with client.stream("POST", fake_api.url + "/v1/messages", json=STREAM_BODY) as response:
                streamed = b"".join([chunk async for chunk in response.aiter_raw()])
            return plain.content, streamed

    plain, streamed = asyncio.run(run())
    assert json.loads(plain)["usage"] == FAKE_USAGE
    assert streamed == b"".join(fake_stream_frames("claude-plain"))
    assert count(value) == 1
    assert count(value, stream="true") == 1
    assert_fake_usage(value, times=2)
    assert value("anthropic_client_time_to_first_token_seconds_count", model="claude-plain", operation="messages") == 1
    assert value("anthropic_client_in_flight_requests", operation="messages") == 0


def test_async_connection_refused(lib: Any, closed_port_url: str, registry: CollectorRegistry, value: Value) -> None:
    async def run() -> None:
        async with async_client_for(lib, registry) as client:
            await client.post(closed_port_url + "/v1/messages", json=BODY)

    with pytest.raises(lib.ConnectError):
        asyncio.run(run())
    assert (
        value(
            "anthropic_client_errors_total", model="claude-plain", operation="messages", error_type="connection_error"
        )
        == 1
    )


def test_instrument_a_plain_client_and_a_mock_transport(lib: Any, registry: CollectorRegistry, value: Value) -> None:
    def handler(request: Any) -> Any:
        return lib.Response(200, json={"usage": FAKE_USAGE}, headers={"request-id": "req_1"})

    client = instrument(lib.Client(transport=lib.MockTransport(handler)), registry=registry)
    response = client.post("http://api.test/v1/messages", json=BODY)
    assert response.json() == {"usage": FAKE_USAGE}
    client.post("http://api.test/v1/messages/count_tokens", json=BODY)
    client.get("http://api.test/v1/models")
    assert count(value) == 1
    assert count(value, operation="count_tokens") == 1
    assert count(value, model="unknown", operation="models") == 1
    assert_fake_usage(value)  # count_tokens' usage-free body counts nothing


def test_a_compressed_body_the_library_read_already_is_not_decoded_twice(
    lib: Any, registry: CollectorRegistry, value: Value
) -> None:
    body = gzip.compress(json.dumps({"usage": FAKE_USAGE}).encode())

    def handler(request: Any) -> Any:  # built from bytes: read (and decoded) before we see it
        return lib.Response(200, content=body, headers={"content-encoding": "gzip"})

    client = instrument(lib.Client(transport=lib.MockTransport(handler)), registry=registry)
    assert client.post("http://api.test/v1/messages", json=BODY).json() == {"usage": FAKE_USAGE}
    assert_fake_usage(value)
    assert value("anthropic_client_instrumentation_errors_total", stage="decode") == 0


def test_a_body_that_is_not_json_has_model_unknown(
    lib: Any, fake_api: FakeAPI, registry: CollectorRegistry, value: Value
) -> None:
    with client_for(lib, registry) as client:
        client.post(fake_api.url + "/v1/messages", content=b"model=claude-x")
        client.post(fake_api.url + "/v1/messages", content=iter([b'{"model":"streamed"}']))
    assert count(value, model="unknown") == 2


def test_recording_failure_leaves_the_caller_alone(
    lib: Any,
    fake_api: FakeAPI,
    registry: CollectorRegistry,
    value: Value,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recorder = Recorder(registry)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("injected")

    monkeypatch.setattr(recorder.metrics.request_duration, "labels", broken)
    monkeypatch.setattr(recorder_module.SSEParser, "feed", broken)
    with lib.Client(transport=InstrumentedTransport(lib.HTTPTransport(), recorder)) as client:
        plain = client.post(fake_api.url + "/v1/messages", json=BODY)
        with client.stream("POST", fake_api.url + "/v1/messages", json=STREAM_BODY) as response:
            streamed = response.read()
    assert plain.json()["usage"] == FAKE_USAGE
    assert streamed == b"".join(fake_stream_frames("claude-plain"))
    errors = "anthropic_client_instrumentation_errors_total"
    assert value(errors, stage="record") == 2
    assert value(errors, stage="stream") > 0
    assert value("anthropic_client_in_flight_requests", operation="messages") == 0


def test_failure_to_start_recording_passes_through(
    lib: Any,
    fake_api: FakeAPI,
    registry: CollectorRegistry,
    value: Value,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recorder = Recorder(registry)
    monkeypatch.setattr(recorder_module, "operation_for_path", None)  # calling it raises
    with lib.Client(transport=InstrumentedTransport(lib.HTTPTransport(), recorder)) as client:
        assert client.post(fake_api.url + "/v1/messages", json=BODY).json()["usage"] == FAKE_USAGE
    assert value("anthropic_client_instrumentation_errors_total", stage="request") == 1


def test_importing_needs_no_http_library() -> None:
    import subprocess
    import sys

    code = (
        "import sys, exporter.client, exporter.client.demo, exporter.client.log_cli\n"
        "print(sorted(m for m in ('anthropic', 'httpx', 'httpx2') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert importlib.import_module("exporter.client").instrument is instrument


def test_instrument_with_a_request_log_path(lib: Any, registry: CollectorRegistry, tmp_path: Any) -> None:
    import sqlite3

    def handler(request: Any) -> Any:
        return lib.Response(200, json={"usage": FAKE_USAGE}, headers={"request-id": "req_logged"})

    path = tmp_path / "requests.sqlite3"
    client = instrument(lib.Client(transport=lib.MockTransport(handler)), registry=registry, request_log=str(path))
    client.post("http://api.test/v1/messages", json=BODY)
    client._transport.recorder.request_log.close()
    rows = sqlite3.connect(path).execute("SELECT request_id, model, output_tokens FROM requests").fetchall()
    assert rows == [("req_logged", "claude-plain", 5)]


def test_instrument_rejects_what_it_cannot_instrument(registry: CollectorRegistry) -> None:
    with pytest.raises(TypeError, match="expects an anthropic SDK client or an httpx/httpx2 client, not object"):
        instrument(object(), registry=registry)
