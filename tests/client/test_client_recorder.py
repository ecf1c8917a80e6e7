"""The recorder's pure parts: operation, body scan, usage, SSE parsing, error classification."""

from __future__ import annotations

import json
import time

import pytest
from prometheus_client import CollectorRegistry

from exporter.client.metrics import DEFAULT_BUCKETS, client_metrics, parse_rfc3339
from exporter.client.recorder import (
    BODY_SCAN_LIMIT,
    SSEParser,
    error_type_for_exception,
    operation_for_path,
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
    assert error_type_for_exception(KeyboardInterrupt()) == "cancelled"


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
