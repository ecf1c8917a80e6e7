"""The whole path of one attempt, pinned: the OpenMetrics exposition a scrape would get.

Metric types, label names and their order, HELP texts, the buckets and the request-id exemplar
are the public contract (metrics.md section 2): a change here is a change to dashboards and
alert rules. Only the wall-clock values (``_created`` samples, the exemplar's timestamp) vary
between runs and are replaced before comparing.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.exposition import generate_latest

from exporter.client import InstrumentedTransport, Recorder
from exporter.pricing import ModelPrices, Rates, default_table

USAGE = {
    "input_tokens": 10,
    "cache_read_input_tokens": 2,
    "cache_creation": {"ephemeral_5m_input_tokens": 3, "ephemeral_1h_input_tokens": 4},
    "output_tokens": 5,
    "server_tool_use": {"web_search_requests": 1},
    "service_tier": "standard",
}
HEADERS = {
    "content-type": "application/json",
    "request-id": "req_golden",
    "anthropic-ratelimit-requests-limit": "50",
    "anthropic-ratelimit-requests-remaining": "49",
    "anthropic-ratelimit-requests-reset": "2030-01-01T00:00:00Z",
}


class FakeClock:
    """A monotonic clock that moves only when told."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def normalised(exposition: str) -> str:
    exposition = re.sub(r"^(\S+_created(?:\{[^}]*\})?) \S+$", r"\1 <created>", exposition, flags=re.M)
    return re.sub(r'(# \{request_id="[^"]*"\} \S+) \S+$', r"\1 <time>", exposition, flags=re.M)


def test_one_attempt_exposition(http_lib: Any) -> None:
    registry = CollectorRegistry()
    clock = FakeClock(100.0)
    body = json.dumps({"type": "message", "usage": USAGE}).encode()

    def answer(request: Any) -> Any:
        clock.now += 0.5  # the API takes half a second
        return http_lib.Response(200, headers=HEADERS, stream=http_lib.ByteStream(body))

    # A table that prices the golden model: $1 / $5 per million, the published cache multiples.
    rates = Rates(Decimal(1), Decimal("1.25"), Decimal(2), Decimal("0.1"), Decimal(5))
    prices = default_table().with_overrides([ModelPrices("claude-golden", "Golden", ((None, rates),))], Decimal(0))
    recorder = Recorder(registry, clock=clock, prices=prices)
    transport = InstrumentedTransport(http_lib.MockTransport(answer), recorder)
    with http_lib.Client(transport=transport) as client:
        response = client.post(
            "http://api.test/v1/messages",
            json={"model": "claude-golden", "max_tokens": 5, "messages": []},
            headers={"x-stainless-retry-count": "1"},
        )
    assert response.json()["usage"] == USAGE
    assert normalised(generate_latest(registry).decode()) == GOLDEN


GOLDEN = """\
# HELP anthropic_client_request_duration_seconds Duration of one HTTP attempt to the Anthropic API (POST /v1/messages, /v1/messages/count_tokens, /v1/messages/batches, /v1/models, ...), timed by the client middleware from sending the request to the end of the response body (a stream: its end or abandonment); status_code from the response's HTTP status. Exemplar: the response's request-id header.
# TYPE anthropic_client_request_duration_seconds histogram
anthropic_client_request_duration_seconds_bucket{le="0.01",model="claude-golden",operation="messages",status_code="200",stream="false"} 0.0
anthropic_client_request_duration_seconds_bucket{le="0.02",model="claude-golden",operation="messages",status_code="200",stream="false"} 0.0
anthropic_client_request_duration_seconds_bucket{le="0.04",model="claude-golden",operation="messages",status_code="200",stream="false"} 0.0
anthropic_client_request_duration_seconds_bucket{le="0.08",model="claude-golden",operation="messages",status_code="200",stream="false"} 0.0
anthropic_client_request_duration_seconds_bucket{le="0.16",model="claude-golden",operation="messages",status_code="200",stream="false"} 0.0
anthropic_client_request_duration_seconds_bucket{le="0.32",model="claude-golden",operation="messages",status_code="200",stream="false"} 0.0
anthropic_client_request_duration_seconds_bucket{le="0.64",model="claude-golden",operation="messages",status_code="200",stream="false"} 1.0 # {request_id="req_golden"} 0.5 <time>
anthropic_client_request_duration_seconds_bucket{le="1.28",model="claude-golden",operation="messages",status_code="200",stream="false"} 1.0
anthropic_client_request_duration_seconds_bucket{le="2.56",model="claude-golden",operation="messages",status_code="200",stream="false"} 1.0
anthropic_client_request_duration_seconds_bucket{le="5.12",model="claude-golden",operation="messages",status_code="200",stream="false"} 1.0
anthropic_client_request_duration_seconds_bucket{le="10.24",model="claude-golden",operation="messages",status_code="200",stream="false"} 1.0
anthropic_client_request_duration_seconds_bucket{le="20.48",model="claude-golden",operation="messages",status_code="200",stream="false"} 1.0
anthropic_client_request_duration_seconds_bucket{le="40.96",model="claude-golden",operation="messages",status_code="200",stream="false"} 1.0
anthropic_client_request_duration_seconds_bucket{le="81.92",model="claude-golden",operation="messages",status_code="200",stream="false"} 1.0
anthropic_client_request_duration_seconds_bucket{le="163.84",model="claude-golden",operation="messages",status_code="200",stream="false"} 1.0
anthropic_client_request_duration_seconds_bucket{le="327.68",model="claude-golden",operation="messages",status_code="200",stream="false"} 1.0
anthropic_client_request_duration_seconds_bucket{le="655.36",model="claude-golden",operation="messages",status_code="200",stream="false"} 1.0
anthropic_client_request_duration_seconds_bucket{le="+Inf",model="claude-golden",operation="messages",status_code="200",stream="false"} 1.0
anthropic_client_request_duration_seconds_count{model="claude-golden",operation="messages",status_code="200",stream="false"} 1.0
anthropic_client_request_duration_seconds_sum{model="claude-golden",operation="messages",status_code="200",stream="false"} 0.5
anthropic_client_request_duration_seconds_created{model="claude-golden",operation="messages",status_code="200",stream="false"} <created>
# HELP anthropic_client_time_to_first_token_seconds Time from sending a streamed POST /v1/messages request to the first content_block_delta event of its response, timed by the client middleware.
# TYPE anthropic_client_time_to_first_token_seconds histogram
# HELP anthropic_client_uncached_input_tokens Input tokens after the last cache breakpoint, from usage.input_tokens of POST /v1/messages responses (a stream: message_start's usage overlaid by the last message_delta's).
# TYPE anthropic_client_uncached_input_tokens counter
anthropic_client_uncached_input_tokens_total{model="claude-golden",service_tier="standard"} 10.0
anthropic_client_uncached_input_tokens_created{model="claude-golden",service_tier="standard"} <created>
# HELP anthropic_client_cache_read_input_tokens Input tokens read from the prompt cache, from usage.cache_read_input_tokens of POST /v1/messages responses (a stream: message_start's usage overlaid by the last message_delta's).
# TYPE anthropic_client_cache_read_input_tokens counter
anthropic_client_cache_read_input_tokens_total{model="claude-golden",service_tier="standard"} 2.0
anthropic_client_cache_read_input_tokens_created{model="claude-golden",service_tier="standard"} <created>
# HELP anthropic_client_cache_creation_input_tokens Input tokens written to the prompt cache, from usage.cache_creation.ephemeral_{5m,1h}_input_tokens of POST /v1/messages responses (a bare usage.cache_creation_input_tokens counts as 5m) (a stream: message_start's usage overlaid by the last message_delta's).
# TYPE anthropic_client_cache_creation_input_tokens counter
anthropic_client_cache_creation_input_tokens_total{cache_ttl="5m",model="claude-golden",service_tier="standard"} 3.0
anthropic_client_cache_creation_input_tokens_created{cache_ttl="5m",model="claude-golden",service_tier="standard"} <created>
anthropic_client_cache_creation_input_tokens_total{cache_ttl="1h",model="claude-golden",service_tier="standard"} 4.0
anthropic_client_cache_creation_input_tokens_created{cache_ttl="1h",model="claude-golden",service_tier="standard"} <created>
# HELP anthropic_client_output_tokens Output tokens, from usage.output_tokens of POST /v1/messages responses (a stream: message_start's usage overlaid by the last message_delta's).
# TYPE anthropic_client_output_tokens counter
anthropic_client_output_tokens_total{model="claude-golden",service_tier="standard"} 5.0
anthropic_client_output_tokens_created{model="claude-golden",service_tier="standard"} <created>
# HELP anthropic_client_web_search_requests Server-side web searches, from usage.server_tool_use.web_search_requests of POST /v1/messages responses (a stream: message_start's usage overlaid by the last message_delta's).
# TYPE anthropic_client_web_search_requests counter
anthropic_client_web_search_requests_total{model="claude-golden",service_tier="standard"} 1.0
anthropic_client_web_search_requests_created{model="claude-golden",service_tier="standard"} <created>
# HELP anthropic_client_estimated_cost_usd Estimated cost in US dollars of POST /v1/messages responses: each response's usage (usage.input_tokens, cache reads, cache writes by TTL, output_tokens, server_tool_use.web_search_requests) priced by the client middleware with the price table of the exporter's estimate (or the one passed to instrument), at the rates in force when the request was sent, at the request's own prompt-length band, usage.inference_geo and usage.speed. A response the table cannot price (unknown model, a tier without a published price) adds nothing (a stream: message_start's usage overlaid by the last message_delta's).
# TYPE anthropic_client_estimated_cost_usd counter
anthropic_client_estimated_cost_usd_total{model="claude-golden",service_tier="standard"} 0.01004695
anthropic_client_estimated_cost_usd_created{model="claude-golden",service_tier="standard"} <created>
# HELP anthropic_client_errors Failed HTTP attempts to the Anthropic API, by error.type of the error response's body (by its HTTP status when the body was not read), or of an error event inside a POST /v1/messages stream; connection_error or timeout when no response arrived.
# TYPE anthropic_client_errors counter
# HELP anthropic_client_retries HTTP attempts to the Anthropic API that were SDK retries, from the request header x-stainless-retry-count (above 0).
# TYPE anthropic_client_retries counter
anthropic_client_retries_total{model="claude-golden",operation="messages"} 1.0
anthropic_client_retries_created{model="claude-golden",operation="messages"} <created>
# HELP anthropic_client_in_flight_requests HTTP attempts to the Anthropic API in progress, counted by the client middleware from sending the request to the end of the response body.
# TYPE anthropic_client_in_flight_requests gauge
anthropic_client_in_flight_requests{operation="messages"} 0.0
# HELP anthropic_client_ratelimit_limit From the anthropic-ratelimit-<resource>-limit header of the newest Anthropic API response (POST /v1/messages and others) for the model.
# TYPE anthropic_client_ratelimit_limit gauge
anthropic_client_ratelimit_limit{model="claude-golden",resource="requests"} 50.0
# HELP anthropic_client_ratelimit_remaining From the anthropic-ratelimit-<resource>-remaining header of the newest Anthropic API response (POST /v1/messages and others) for the model.
# TYPE anthropic_client_ratelimit_remaining gauge
anthropic_client_ratelimit_remaining{model="claude-golden",resource="requests"} 49.0
# HELP anthropic_client_ratelimit_reset_timestamp_seconds From the anthropic-ratelimit-<resource>-reset header (RFC 3339) of the newest Anthropic API response (POST /v1/messages and others) for the model, as a Unix timestamp.
# TYPE anthropic_client_ratelimit_reset_timestamp_seconds gauge
anthropic_client_ratelimit_reset_timestamp_seconds{model="claude-golden",resource="requests"} 1.893456e+09
# HELP anthropic_client_instrumentation_errors Failures inside the client middleware's own recording, by stage (counted by the middleware, not read from the API); the API call itself is unaffected.
# TYPE anthropic_client_instrumentation_errors counter
anthropic_client_instrumentation_errors_total{stage="request"} 0.0
anthropic_client_instrumentation_errors_created{stage="request"} <created>
anthropic_client_instrumentation_errors_total{stage="response"} 0.0
anthropic_client_instrumentation_errors_created{stage="response"} <created>
anthropic_client_instrumentation_errors_total{stage="stream"} 0.0
anthropic_client_instrumentation_errors_created{stage="stream"} <created>
anthropic_client_instrumentation_errors_total{stage="decode"} 0.0
anthropic_client_instrumentation_errors_created{stage="decode"} <created>
anthropic_client_instrumentation_errors_total{stage="record"} 0.0
anthropic_client_instrumentation_errors_created{stage="record"} <created>
anthropic_client_instrumentation_errors_total{stage="log"} 0.0
anthropic_client_instrumentation_errors_created{stage="log"} <created>
anthropic_client_instrumentation_errors_total{stage="log_write"} 0.0
anthropic_client_instrumentation_errors_created{stage="log_write"} <created>
anthropic_client_instrumentation_errors_total{stage="request_log_closed"} 0.0
anthropic_client_instrumentation_errors_created{stage="request_log_closed"} <created>
# HELP anthropic_client_request_log_dropped Per-request log rows dropped because the log writer's queue was full (counted by the client middleware, not read from the API).
# TYPE anthropic_client_request_log_dropped counter
anthropic_client_request_log_dropped_total 0.0
anthropic_client_request_log_dropped_created <created>
# HELP anthropic_client_request_log_errors Writes of the per-request log's SQLite file that failed (one per batch of rows, whose rows are lost), by cause from SQLite's result code: disk_full (SQLITE_FULL), locked (SQLITE_BUSY, SQLITE_LOCKED), io (SQLITE_IOERR), other (counted by the client middleware, not read from the API).
# TYPE anthropic_client_request_log_errors counter
anthropic_client_request_log_errors_total{reason="disk_full"} 0.0
anthropic_client_request_log_errors_created{reason="disk_full"} <created>
anthropic_client_request_log_errors_total{reason="locked"} 0.0
anthropic_client_request_log_errors_created{reason="locked"} <created>
anthropic_client_request_log_errors_total{reason="io"} 0.0
anthropic_client_request_log_errors_created{reason="io"} <created>
anthropic_client_request_log_errors_total{reason="other"} 0.0
anthropic_client_request_log_errors_created{reason="other"} <created>
# EOF
"""


def test_label_names_in_the_contract_order() -> None:
    """The label names of metrics.md section 2's table, in its order (the exposition sorts them)."""
    metrics = Recorder(CollectorRegistry()).metrics
    model_tier = ("model", "service_tier")
    expected = {
        metrics.request_duration: ("model", "operation", "status_code", "stream"),
        metrics.time_to_first_token: ("model", "operation"),
        metrics.uncached_input_tokens: model_tier,
        metrics.cache_read_input_tokens: model_tier,
        metrics.cache_creation_input_tokens: (*model_tier, "cache_ttl"),
        metrics.output_tokens: model_tier,
        metrics.web_search_requests: model_tier,
        metrics.estimated_cost: model_tier,
        metrics.errors: ("model", "operation", "error_type"),
        metrics.retries: ("model", "operation"),
        metrics.in_flight: ("operation",),
        metrics.ratelimit_limit: ("model", "resource"),
        metrics.ratelimit_remaining: ("model", "resource"),
        metrics.ratelimit_reset: ("model", "resource"),
        metrics.instrumentation_errors: ("stage",),
        metrics.request_log_dropped: (),
        metrics.request_log_errors: ("reason",),
    }
    assert {m: tuple(m._labelnames) for m in expected} == expected
