"""The recorder's pure parts: operation, body scan, usage, SSE parsing, error classification."""

from __future__ import annotations

import gzip
import json
import time
from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry

from exporter.client.metrics import DEFAULT_BUCKETS, client_metrics, parse_rfc3339
from exporter.client.recorder import (
    BODY_SCAN_LIMIT,
    Recorder,
    SSEParser,
    error_type_for_exception,
    operation_for_path,
    overlay_usage,
    scan_body,
    token_figures,
)

from .fakes import FAKE_USAGE, fake_stream_frames


@pytest.mark.parametrize(
    ("path", "operation"),
    [
        ("/v1/messages", "messages"),
        ("/v1/messages/", "messages"),
        ("/v1/messages/count_tokens", "count_tokens"),
        ("/v1/messages/batches", "batches"),
        ("/v1/messages/batches/msgbatch_01/results", "batches"),
        ("/v1/models", "models"),
        ("/v1/models/claude-sonnet-4-5", "models"),
        ("/v1/complete", "other"),
        ("/v1/organizations/usage_report/messages", "other"),
        ("/proxy/anthropic/v1/messages", "messages"),
        ("/", "other"),
    ],
)
def test_operation_from_path(path: str, operation: str) -> None:
    assert operation_for_path(path) == operation


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"model":"claude-x","max_tokens":5}', ("claude-x", None)),
        (b'{ "stream" : true, "model" : "claude-x" }', ("claude-x", True)),
        (b'{"max_tokens":5,"messages":[{"role":"user","content":"hi"}],"model":"m","stream":false}', ("m", False)),
        (b'{"stream":false,"model":"m"}', ("m", False)),
        # "model" nested in a message or a tool schema is not the request's model
        (b'{"messages":[{"content":{"model":"wrong"}}],"model":"right"}', ("right", None)),
        (b'{"tools":[{"input_schema":{"properties":{"model":{"type":"string"}}}}]}', (None, None)),
        # escaped quotes inside strings do not confuse the nesting
        (b'{"system":"say \\"model\\": \\"x\\" {[","model":"m2"}', ("m2", None)),
        (b'{"model":"claude-\\u00e9"}', ("claude-\u00e9", None)),
        (b'{"model":5}', (None, None)),
        (b"not json", (None, None)),
        (b"", (None, None)),
        (b"model=claude-x", (None, None)),
    ],
)
def test_scan_body(body: bytes, expected: tuple[object, object]) -> None:
    assert scan_body(body) == expected


def test_scan_body_looks_only_at_a_bounded_prefix() -> None:
    filler = json.dumps({"role": "user", "content": "x" * BODY_SCAN_LIMIT})
    body = ('{"messages":[' + filler + '],"model":"late"}').encode()
    assert scan_body(body) == (None, None)
    # and its time does not grow with the body
    huge = ('{"messages":[' + json.dumps("y" * 8_000_000) + '],"model":"late"}').encode()
    start = time.perf_counter()
    for _ in range(10):
        scan_body(huge)
    assert (time.perf_counter() - start) / 10 < 0.005


def test_token_figures() -> None:
    assert token_figures(FAKE_USAGE) == (10, 2, 3, 4, 5, 1)  # the split wins over the total (7)
    # only the total of cache writes: it counts as 5m
    assert token_figures({"input_tokens": 1, "cache_creation_input_tokens": 9, "output_tokens": 2}) == (
        1,
        0,
        9,
        0,
        2,
        0,
    )
    assert token_figures(
        {"input_tokens": None, "output_tokens": -3, "cache_creation": None, "server_tool_use": None}
    ) == (0, 0, 0, 0, 0, 0)


def test_parse_rfc3339() -> None:
    assert parse_rfc3339("2030-01-01T00:00:00Z") == 1893456000.0
    assert parse_rfc3339("2030-01-01T01:00:00.5+01:00") == 1893456000.5


def _parse(chunks: list[bytes]) -> SSEParser:
    errors: list[Exception] = []
    ticks = iter(range(1, 1000))
    parser = SSEParser(lambda: float(next(ticks)), errors.append)
    for chunk in chunks:
        parser.feed(chunk)
    assert errors == []
    return parser


def test_sse_usage_is_start_overlaid_by_the_last_delta() -> None:
    parser = _parse(fake_stream_frames("m"))
    assert parser.usage is not None
    assert token_figures(parser.usage) == (10, 2, 3, 4, 5, 1)
    assert parser.usage["service_tier"] == "standard"
    assert parser.error_type is None
    assert parser.first_delta_at == 1.0  # the clock is read once: at the first delta


def test_sse_is_parsed_the_same_whatever_the_chunking() -> None:
    body = b"".join(fake_stream_frames("m")).replace(b"\n\n", b"\r\n\r\n", 1)
    whole = _parse([body])
    for size in (1, 2, 3, 7, 64):
        parts = [body[i : i + size] for i in range(0, len(body), size)]
        parsed = _parse(parts)
        assert parsed.usage == whole.usage
        assert parsed.first_delta_at is not None


def test_sse_null_in_message_delta_keeps_message_start_value() -> None:
    parser = _parse(
        [
            b'event: message_start\ndata: {"type":"message_start","message":{"usage":{"input_tokens":100,'
            b'"cache_read_input_tokens":50,"cache_creation":{"ephemeral_5m_input_tokens":3,'
            b'"ephemeral_1h_input_tokens":4},"output_tokens":1,"server_tool_use":{"web_search_requests":2}}}}\n\n',
            b'event: message_delta\ndata: {"type":"message_delta","usage":{"input_tokens":null,'
            b'"cache_read_input_tokens":null,"cache_creation":{"ephemeral_5m_input_tokens":null,'
            b'"ephemeral_1h_input_tokens":6},"output_tokens":7,"server_tool_use":{"web_search_requests":null}}}\n\n',
        ]
    )
    assert parser.usage is not None
    assert token_figures(parser.usage) == (100, 50, 3, 6, 7, 2)


def test_overlay_usage() -> None:
    start = {"input_tokens": 1, "cache_creation": {"ephemeral_5m_input_tokens": 2}, "service_tier": "standard"}
    delta = {
        "input_tokens": 5,
        "service_tier": None,
        "cache_creation": {"ephemeral_1h_input_tokens": 3, "ephemeral_5m_input_tokens": None},
        "server_tool_use": {"web_search_requests": 1, "web_fetch_requests": None},
    }
    assert overlay_usage(start, delta) == {
        "input_tokens": 5,
        "cache_creation": {"ephemeral_5m_input_tokens": 2, "ephemeral_1h_input_tokens": 3},
        "service_tier": "standard",
        "server_tool_use": {"web_search_requests": 1},
    }
    assert start == {"input_tokens": 1, "cache_creation": {"ephemeral_5m_input_tokens": 2}, "service_tier": "standard"}


def test_sse_error_event() -> None:
    parser = _parse(fake_stream_frames("m", fail=True))
    assert parser.error_type == "overloaded_error"
    assert parser.usage is not None and parser.usage["output_tokens"] == 1


def test_sse_without_event_lines_and_with_comments() -> None:
    body = (
        b": a comment\n"
        b'data: {"type":"message_start","message":{"usage":{"input_tokens":3,"output_tokens":1}}}\n\n'
        b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"x"}}\n\n'
        b'data: {"type":"message_delta","usage":{"output_tokens":4}}\n\n'
    )
    parser = _parse([body])
    assert parser.usage == {"input_tokens": 3, "output_tokens": 4}
    assert parser.first_delta_at is not None


def test_sse_malformed_event_is_skipped_and_reported() -> None:
    errors: list[Exception] = []
    parser = SSEParser(time.perf_counter, errors.append)
    parser.feed(b"event: message_start\ndata: {not json\n\n")
    parser.feed(b'event: message_delta\ndata: {"usage":{"output_tokens":4}}\n\n')
    assert len(errors) == 1
    assert parser.usage == {"output_tokens": 4}


def test_sse_overlong_line_is_dropped_whole() -> None:
    parser = _parse(
        [
            b"event: content_block_delta\ndata: ",
            b"x" * (2 * 1024 * 1024),
            b"\n\n",
            b'event: message_delta\ndata: {"usage":{"output_tokens":4}}\n\n',
        ]
    )
    assert parser.usage == {"output_tokens": 4}
    assert parser.first_delta_at is not None


def test_error_type_for_exception() -> None:
    class TimeoutException(Exception):  # the name httpx and httpx2 use for their base class
        pass

    class ReadTimeout(TimeoutException):
        pass

    assert error_type_for_exception(ReadTimeout()) == "timeout"
    assert error_type_for_exception(TimeoutError()) == "timeout"
    assert error_type_for_exception(ConnectionRefusedError()) == "connection_error"


class FakeClock:
    """A monotonic clock that moves only when told."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def fake_request(path: str = "/v1/messages") -> SimpleNamespace:
    """Shaped like an httpx request, as far as the recorder looks."""
    return SimpleNamespace(url=SimpleNamespace(path=path), headers={}, content=b'{"model":"m"}')


def fake_response(status: int, **headers: str) -> SimpleNamespace:
    return SimpleNamespace(status_code=status, headers=headers)


DURATION_COUNT = "anthropic_client_request_duration_seconds_count"


def test_an_interrupt_records_the_duration_and_no_error() -> None:
    registry = CollectorRegistry()
    clock = FakeClock()
    recorder = Recorder(registry, clock=clock)
    for interrupt in (KeyboardInterrupt(), SystemExit()):
        attempt = recorder.start(fake_request())
        assert attempt is not None
        clock.now += 0.25
        attempt.no_response(interrupt)
    labels = {"model": "m", "operation": "messages", "status_code": "none", "stream": "false"}
    assert registry.get_sample_value(DURATION_COUNT, labels) == 2
    assert registry.get_sample_value("anthropic_client_request_duration_seconds_sum", labels) == 0.5
    assert [s for m in registry.collect() if m.name == "anthropic_client_errors" for s in m.samples] == []


def test_an_abandoned_attempt_is_recorded_on_the_next_call_or_at_close() -> None:
    registry = CollectorRegistry()
    clock = FakeClock()
    recorder = Recorder(registry, clock=clock)
    in_flight = {"operation": "messages"}
    labels = {"model": "m", "operation": "messages", "status_code": "200", "stream": "false"}

    def abandon_one() -> None:
        attempt = recorder.start(fake_request())
        assert attempt is not None
        clock.now += 1.0
        attempt.response(fake_response(200))  # the last activity
        clock.now += 9.0
        attempt.abandoned()  # what a finalizer does: no recording yet

    abandon_one()
    assert registry.get_sample_value("anthropic_client_in_flight_requests", in_flight) == 1
    assert registry.get_sample_value(DURATION_COUNT, labels) is None
    recorder.start(fake_request("/v1/models"))  # the next request records it
    assert registry.get_sample_value(DURATION_COUNT, labels) == 1
    assert registry.get_sample_value("anthropic_client_request_duration_seconds_sum", labels) == 1.0
    assert registry.get_sample_value("anthropic_client_in_flight_requests", in_flight) == 0

    abandon_one()
    recorder.close()
    assert registry.get_sample_value(DURATION_COUNT, labels) == 2


def _decoded_attempt(registry: CollectorRegistry, status: int, encoding: str, chunks: list[bytes]) -> None:
    recorder = Recorder(registry)
    attempt = recorder.start(fake_request())
    assert attempt is not None
    attempt.response(fake_response(status, **{"content-type": "application/json", "content-encoding": encoding}))
    for chunk in chunks:
        attempt.feed(chunk)
    attempt.finish()


def test_a_gzip_body_arriving_byte_by_byte_is_decoded() -> None:
    registry = CollectorRegistry()
    body = gzip.compress(json.dumps({"type": "message", "usage": FAKE_USAGE}).encode())
    _decoded_attempt(registry, 200, "gzip", [body[i : i + 1] for i in range(len(body))])
    tier = {"model": "m", "service_tier": "standard"}
    assert registry.get_sample_value("anthropic_client_uncached_input_tokens_total", tier) == 10
    assert registry.get_sample_value("anthropic_client_instrumentation_errors_total", {"stage": "decode"}) == 0


def test_a_corrupt_compressed_body_is_counted_once_and_typed_by_status() -> None:
    registry = CollectorRegistry()
    _decoded_attempt(registry, 529, "gzip", [b"not gzip at all", b"nor this", b"nor this"])
    errors = {"model": "m", "operation": "messages", "error_type": "overloaded_error"}
    assert registry.get_sample_value("anthropic_client_errors_total", errors) == 1
    assert registry.get_sample_value("anthropic_client_instrumentation_errors_total", {"stage": "decode"}) == 1


# metrics.md section 2, written out: not derived from the code under test
CONTRACT_BUCKETS = (
    0.01,
    0.02,
    0.04,
    0.08,
    0.16,
    0.32,
    0.64,
    1.28,
    2.56,
    5.12,
    10.24,
    20.48,
    40.96,
    81.92,
    163.84,
    327.68,
    655.36,
)


def test_default_buckets_are_the_contract_boundaries() -> None:
    assert DEFAULT_BUCKETS == CONTRACT_BUCKETS
    registry = CollectorRegistry()
    attempt = Recorder(registry).start(fake_request())
    assert attempt is not None
    attempt.finish()
    for metric in registry.collect():
        if metric.name == "anthropic_client_request_duration_seconds":
            les = [s.labels["le"] for s in metric.samples if s.name.endswith("_bucket")]
            assert les == [*(str(b) for b in CONTRACT_BUCKETS), "+Inf"]


def test_metrics_are_shared_per_registry() -> None:
    registry = CollectorRegistry()
    first = client_metrics(registry)
    assert client_metrics(registry) is first
    assert client_metrics(registry, DEFAULT_BUCKETS) is first
    with pytest.raises(ValueError, match="already registered"):
        client_metrics(registry, [1.0, 2.0])
    other = client_metrics(CollectorRegistry(), [1.0, 2.0])
    assert other.buckets == (1.0, 2.0)
    # every stage's error counter exists at 0 before the first failure
    assert registry.get_sample_value("anthropic_client_instrumentation_errors_total", {"stage": "record"}) == 0.0
